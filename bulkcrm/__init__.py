"""bulkcrm: move organizations and their notes between spreadsheets and the RogerRoger CRM API."""
