"""PDF pages as page images: rendered at the configured resolution within the pixel budget, damage named."""

import numpy as np
import pytest
from PIL import Image

from dharma_train.data import pdf
from dharma_train.data.images import page_count, prepare_image
from dharma_train.data.validation import RowProblem
from tests.data.documents import Picture, Text, encrypt_pdf, make_pdf


def _two_pages() -> bytes:
    return make_pdf([[Text("PREFEITURA MUNICIPAL", 200, 800, size=16), Text("Art. 1º Fica aprovado.", 72, 700)],
                     [Text("Página dois", 72, 700)]])


def test_a_page_renders_at_the_configured_resolution(tmp_path):
    prepared = prepare_image(_two_pages(), None, tmp_path, page=2, pdf_dpi=72)
    assert (prepared.page, prepared.fixes) == (2, [])
    with Image.open(prepared.path) as image:
        assert image.size == (595, 842) and image.mode == "RGB"
        pixels = np.asarray(image)
    assert pixels.min() < 100 and np.median(pixels) == 255, "black text on white paper"
    with Image.open(prepare_image(_two_pages(), None, tmp_path, page=2, pdf_dpi=150).path) as image:
        assert image.size == (1240, 1755)


def test_a_page_over_the_pixel_budget_renders_smaller_and_says_so(tmp_path):
    prepared = prepare_image(_two_pages(), None, tmp_path, max_pixels=250_000, page=1, pdf_dpi=300)
    (reason, detail), = prepared.fixes
    assert reason == "resized"
    assert detail == "page 1 rendered at 51 dpi, not 300, to stay within max_pixels 250000: 420x595"
    with Image.open(prepared.path) as image:
        assert image.width * image.height <= 250_000 and image.width * image.height > 0.99 * 250_000
        assert abs(image.width / image.height - 595 / 842) < 0.01


def test_pages_of_one_pdf_are_distinct_pages_and_a_whole_pdf_needs_one_answer_per_page(tmp_path):
    data = _two_pages()
    first, second = (prepare_image(data, None, tmp_path, page=page) for page in (1, 2))
    assert first.sha256 != second.sha256 and first.path != second.path
    assert page_count(data) == 2
    with pytest.raises(RowProblem) as problem:
        prepare_image(data, None, tmp_path)
    assert problem.value.reason == "multi_page" and "the PDF has 2 pages" in problem.value.detail
    single = make_pdf([[Text("só uma página", 72, 700)]])
    assert prepare_image(single, None, tmp_path).page == 1, "a one-page PDF needs no page number"
    with pytest.raises(RowProblem, match="page 3 does not exist"):
        prepare_image(data, None, tmp_path, page=3)


def test_an_encrypted_pdf_says_to_decrypt_it(tmp_path):
    with pytest.raises(RowProblem) as problem:
        prepare_image(encrypt_pdf(_two_pages()), None, tmp_path, page=1)
    assert problem.value.reason == "encrypted_pdf" and "qpdf --decrypt" in problem.value.detail


@pytest.mark.parametrize("data", [b"%PDF-1.7\nnot really a pdf", _two_pages()[:200]])
def test_a_damaged_pdf_is_corrupt_pdf(tmp_path, data):
    with pytest.raises(RowProblem) as problem:
        prepare_image(data, None, tmp_path, page=1)
    assert problem.value.reason == "corrupt_pdf" and "not a readable PDF" in problem.value.detail


def test_a_rotated_page_renders_as_a_viewer_shows_it(tmp_path):
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(make_pdf([[Picture(0, 0, 595, 842)]]))
    document[0].set_rotation(90)
    rotated = tmp_path / "rotated.pdf"
    document.save(rotated)
    plan = pdf.plan_page(rotated.read_bytes(), 1, 72, 10**8)
    assert (plan.width, plan.height) == (842, 595)

