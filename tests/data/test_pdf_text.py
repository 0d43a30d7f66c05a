"""A born-digital page's text layer as an answer: furniture by position bands, whole lines, hidden text refused."""

import pytest

from dharma_train.data.pdf_text import Bands, Line, assign, page_answer
from dharma_train.data.schema import PageAnswer
from dharma_train.data.validation import RowProblem
from tests.data.documents import Picture, Text, make_pdf

GAZETTE = [Text("DIÁRIO OFICIAL DO MUNICÍPIO", 150, 810), Text("fl. 3", 10, 500, size=8),
           Text("Art. 1º Fica aprovada a pala-", 72, 700), Text("vra partida em duas linhas.", 72, 686),
           Text("Publique-se.", 72, 660), Text("Página 1 de 2", 260, 20)]


def test_a_gazette_page_splits_into_the_schema_fields():
    answer = page_answer(make_pdf([GAZETTE]), 1, Bands())
    assert answer == PageAnswer(header="DIÁRIO OFICIAL DO MUNICÍPIO", margin="fl. 3", footer="Página 1 de 2",
                                text="Art. 1º Fica aprovada a pala-\nvra partida em duas linhas.\nPublique-se.")


def test_the_bands_are_the_users_to_set():
    answer = page_answer(make_pdf([GAZETTE]), 1, Bands(header=0, footer=0, margin=0))
    assert (answer.header, answer.margin, answer.footer) == ("", "", "")
    assert answer.text.splitlines()[0] == "DIÁRIO OFICIAL DO MUNICÍPIO" and "Página 1 de 2" in answer.text
    wide = page_answer(make_pdf([GAZETTE]), 1, Bands(header=0.2))
    assert wide.header == "DIÁRIO OFICIAL DO MUNICÍPIO\nArt. 1º Fica aprovada a pala-\nvra partida em duas linhas."
    with pytest.raises(ValueError, match="the margin band must be a share of the page in"):
        Bands(margin=0.5)


def test_a_line_crossing_a_band_is_body_text_not_cut():
    """Lines are assigned whole: a body line that starts inside the margin band stays one line of text."""
    lines = [Line("nota", 0.01, 0.5, 0.06, 0.51), Line("corpo que começa na margem", 0.05, 0.6, 0.9, 0.61)]
    assert assign(lines, Bands()) == PageAnswer(margin="nota", text="corpo que começa na margem")


def test_a_rotated_page_reads_its_bands_as_shown():
    import io

    import pypdfium2 as pdfium

    landscape = [Text("CABEÇALHO", 30, 300, turned=True), Text("corpo do texto", 200, 300, turned=True)]
    document = pdfium.PdfDocument(make_pdf([landscape]))
    document[0].set_rotation(90)  # shown turned clockwise: the left edge (x = 30) is the top, the text reads across
    buffer = io.BytesIO()
    document.save(buffer)
    answer = page_answer(buffer.getvalue(), 1, Bands())
    assert (answer.header, answer.text) == ("CABEÇALHO", "corpo do texto")


@pytest.mark.parametrize("items, reason, detail", [
    ([Text("oculto", 72, 600, invisible=True), Text("visível", 72, 500)], "invisible_text", "6 drawn invisible"),
    ([Text("fora", 700, 600), Text("dentro", 72, 600)], "invisible_text", "4 outside the page"),
    ([Picture(0, 0, 595, 842)], "image_only", "1 image(s): a scan"),
    ([], "empty_text_layer", "a blank page"),
])
def test_pages_whose_text_layer_does_not_match_the_page_give_no_answer(items, reason, detail):
    with pytest.raises(RowProblem) as problem:
        page_answer(make_pdf([items]), 1, Bands())
    assert problem.value.reason == reason and detail in problem.value.detail
