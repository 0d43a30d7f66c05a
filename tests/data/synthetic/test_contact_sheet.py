from PIL import Image

from dharma_train.data.synthetic.contact_sheet import write_contact_sheet
from dharma_train.data.synthetic.generate import ALL_FAMILIES, generate_pages


def test_a_sheet_shows_every_family_beside_its_ground_truth(tmp_path):
    pages = generate_pages(tmp_path / "pages", 8, seed=0, families=ALL_FAMILIES)
    path = write_contact_sheet(pages.root, tmp_path / "sheets" / "sheet.png", count=4, columns=2)
    with Image.open(path) as sheet:
        sheet.load()
    assert path.stat().st_size < 500_000
    assert sheet.width > 2 * 224 and sheet.height > 2 * 300  # 2 x 2 cells, each a page and its text
    cell_width, cell_height = sheet.width // 2, sheet.height // 2
    for row in range(2):
        for column in range(2):
            cell = sheet.crop((column * cell_width, row * cell_height, (column + 1) * cell_width,
                               (row + 1) * cell_height)).convert("L")
            page_side, text_side = cell.crop((0, 0, 250, cell_height)), cell.crop((260, 0, cell_width, cell_height))
            assert page_side.getextrema()[0] < 120, "the page thumbnail is drawn"
            assert text_side.getextrema()[0] < 120, "its ground truth is written beside it"


def test_a_sheet_of_one_family_takes_the_first_pages(tmp_path):
    pages = generate_pages(tmp_path / "pages", 3, seed=0, families=("legal",))
    path = write_contact_sheet(pages.root, tmp_path / "sheet.png", count=8, columns=3)
    with Image.open(path) as sheet:
        assert sheet.height < sheet.width  # one row of three: only three pages exist
