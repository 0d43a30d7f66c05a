import random

import pytest

from dharma_train.data.synthetic.fonts import FONTPKG_FACES, ROLES, faces, missing_packages, pick_face

PORTUGUESE = "ãçéôºª õáâêíóúà ÃÇÉÔÕÁ — R$ 1.234,56 nº"


def test_every_font_package_the_project_depends_on_is_installed():
    """pyproject.toml lists them, so `pip install dharma_train` brings every typeface; nothing is downloaded later."""
    assert missing_packages() == []


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_its_packaged_faces_and_a_dejavu_fallback(role):
    names = [face.name for face in faces(role)]
    assert len(names) >= len(FONTPKG_FACES[role]) + 1
    assert any(name.startswith("DejaVu") for name in names)
    assert all(face.path.suffix == ".ttf" and face.path.is_file() for face in faces(role))


def test_handwriting_has_several_real_handwriting_faces():
    handwriting = [face.name for face in faces("hand") if not face.name.startswith("DejaVu")]
    assert {"Caveat", "Dancing Script", "Kalam"} <= set(handwriting)


@pytest.mark.parametrize("role", ROLES)
def test_every_face_draws_portuguese(role):
    for face in faces(role):
        assert face.covers(PORTUGUESE), face.name


def test_pick_face_is_seeded_and_skips_faces_without_the_glyphs():
    assert pick_face(random.Random(3), "serif", "olá") == pick_face(random.Random(3), "serif", "olá")
    assert len({pick_face(random.Random(seed), "serif", "olá").name for seed in range(30)}) > 2
    only_dejavu = "Ж"  # Cyrillic: DejaVu has it; Caveat has it too, the other handwriting faces do not
    assert all(pick_face(random.Random(seed), "hand", only_dejavu).covers(only_dejavu) for seed in range(20))
    with pytest.raises(ValueError, match="glyph"):
        pick_face(random.Random(0), "serif", "漢字")
    with pytest.raises(ValueError, match="unknown font role"):
        faces("gothic")
