from dharma_train.artifact import ModelArtifact


def test_adapter_chain_round_trips_through_disk(tmp_path):
    base = ModelArtifact(path="org/base")
    adapter = ModelArtifact(path=str(tmp_path / "adapter"), base=ModelArtifact(path=str(tmp_path / "m"), base=base))
    adapter.save(tmp_path)
    loaded = ModelArtifact.load(tmp_path)
    assert loaded == adapter
    assert loaded.is_adapter and loaded.base.base == base
    assert not base.is_adapter and base.processor_location == "org/base"
