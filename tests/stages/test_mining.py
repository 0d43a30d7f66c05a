import pytest

from dharma_train.data.schema import PageAnswer
from dharma_train.evaluation.metrics import score_page
from dharma_train.stages.mining import MiningConfig, rejection_reason

REFERENCE = PageAnswer(header="PREFEITURA MUNICIPAL", footer="Rua das Flores, 12", text="Certifico que o imóvel.")


@pytest.mark.parametrize("output, hit_limit, reason", [
    (REFERENCE.to_json(), False, ""),
    ('{"header": "PREFEITURA MUNICIPAL", "text": "' + "o imóvel " * 60, True, "degenerate"),
    ("texto solto sem JSON", False, "invalid_json"),
    ('{"header": "a", "header": "b", "margin": "", "footer": "", "text": ""}', False, "schema"),
    (PageAnswer(header="PREFEITURA MUNICIPAL", footer="Rua das Flores, 12",
                text="Rua das Flores, 12 Rua das Flores, 12 Rua das Flores, 12 texto").to_json(), False,
     "furniture_repeat"),
])
def test_each_failure_maps_to_its_mining_reason(output, hit_limit, reason):
    assert rejection_reason(score_page("p", "legal", output, REFERENCE, hit_limit, 10)) == reason


def test_config_refuses_unknown_reasons_and_empty_passes():
    with pytest.raises(ValueError, match="mining.reasons"):
        MiningConfig(reasons=["ugly"])
    with pytest.raises(ValueError, match="greedy=true or samples_per_page"):
        MiningConfig(greedy=False, samples_per_page=0)
    with pytest.raises(ValueError, match="on_too_few"):
        MiningConfig(on_too_few="maybe")
    with pytest.raises(ValueError, match="mining.prefill_chunk_tokens"):
        MiningConfig(prefill_chunk_tokens=-1)
