"""Text hygiene: BOM, line ends and decomposed accents fixed with a reason each; other encodings named."""

import unicodedata

import pytest

from dharma_train.data.text_hygiene import clean_text, likely_encoding, merge_fixes, not_utf8, strip_bom


def test_clean_text_fixes_and_names_each_problem():
    nfd = unicodedata.normalize("NFD", "Publicação")
    text, fixes = clean_text("\ufeffLinha um\r\n" + nfd + "\rfim", "'text'")
    assert text == "Linha um\nPublicação\nfim"
    assert [reason for reason, _ in fixes] == ["removed_bom", "normalized_newlines", "normalized_unicode"]
    assert "1 CRLF" in fixes[1][1] and "2 combining mark(s)" in fixes[2][1]


def test_clean_text_leaves_clean_text_alone():
    assert clean_text("Seção 1\nAcórdão", "'text'") == ("Seção 1\nAcórdão", [])
    assert strip_bom("sem marca", "x") == ("sem marca", [])


def test_a_row_counts_each_reason_once():
    merged = merge_fixes([("normalized_newlines", "header"), ("removed_bom", "file"), ("normalized_newlines", "text")])
    assert merged == [("normalized_newlines", "header; text"), ("removed_bom", "file")]


@pytest.mark.parametrize("text, encoding, name, reads", [
    ("Publicação “oficial” – 3º", "cp1252", "Windows-1252", "Publicação “oficial” – 3º"),
    ("Publicação oficial", "latin-1", "Windows-1252 (ISO-8859-1 reads it the same)", "Publicação oficial"),
    ("Publicação oficial", "utf-16", "UTF-16LE", None),
    ("Publicação oficial", "utf-16-be", "UTF-16BE", None),
])
def test_the_likely_encoding_of_text_that_is_not_utf8(text, encoding, name, reads):
    guessed, sample = likely_encoding(text.encode(encoding))
    assert guessed == name
    assert (reads in sample) if reads else sample == ""


def test_the_message_says_how_to_convert():
    data = "Diário Oficial do Município".encode("cp1252")
    with pytest.raises(UnicodeDecodeError) as error:
        data.decode("utf-8")
    message = not_utf8(data, error.value, "page.txt")
    assert message.startswith("page.txt is not UTF-8 (byte 0xe1 at offset 2); it is most likely Windows-1252")
    assert "iconv -f WINDOWS-1252 -t UTF-8 IN > OUT" in message and "Diário Oficial" in message
