"""run.prepare_pages: generated splits, and stages whose `data` names a generated set."""

from hydra import compose, initialize_config_dir

from dharma_train.config import validate
from dharma_train.configs import config_dir, register_recipes
from dharma_train.data.pages import load_pages
from dharma_train.data.synthetic import generate_pages
from dharma_train.run import prepare_pages


def _config(tmp_path, *overrides):
    register_recipes()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        composed = compose(config_name="config", overrides=[
            f"output_dir={tmp_path}", "data.synthetic.train_pages=3", "data.synthetic.eval_pages=2",
            "data.synthetic.general_pages=4", *overrides])
    return validate(composed)


def test_a_stage_naming_general_trains_on_generated_mixed_language_pages(tmp_path):
    config = _config(tmp_path)
    train, evaluation = prepare_pages(config)
    assert (len(train), len(evaluation)) == (3, 2)
    general_dir = tmp_path / "data" / "general"
    assert config.stages["general_ocr"].data == str(general_dir)
    general = load_pages(general_dir)
    assert len(general) == 4
    assert {(page.family, page.task) for page in general} == {("general", "general")}
    assert all(page.answer.text.startswith("# ") for page in general)
    markers = ("#", "##", "-")
    assert all(len([w for w in page.answer.text.split() if w not in markers]) <= 20 for page in general)
    assert config.stages["structured"].data is None, "stages without data keep the run's training pages"


def test_a_folder_is_left_as_a_folder_and_nothing_else_is_generated(tmp_path):
    own = generate_pages(tmp_path / "own", 2, seed=0, task="plain")
    config = _config(tmp_path / "run", f"stages.general_ocr.data={own.root}")
    prepare_pages(config)
    assert config.stages["general_ocr"].data == str(own.root)
    assert not (tmp_path / "run" / "data" / "general").exists()


def test_synthetic_options_reach_the_generated_splits(tmp_path):
    config = _config(tmp_path, "data.synthetic.families=[legal]", "data.synthetic.max_words=8",
                     "stages.general_ocr.data=null")
    train, evaluation = prepare_pages(config)
    assert {page.family for page in [*train, *evaluation]} == {"legal"}
    assert all(len(page.answer.text.split()) <= 8 for page in train)
