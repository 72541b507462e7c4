"""Write samples/organizations.xlsx from samples/organizations.csv (every cell as text)."""
import csv
from pathlib import Path

import xlsxwriter

here = Path(__file__).parent
with open(here / "organizations.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
book = xlsxwriter.Workbook(here / "organizations.xlsx")
sheet = book.add_worksheet("Customers")
for r, row in enumerate(rows):
    for c, value in enumerate(row):
        sheet.write_string(r, c, value)
book.close()
