"""`env` names the installed versions, the device and each optional package with what it enables."""

from importlib import metadata

from dharma_train.cli.env_report import OPTIONAL, env_report


def test_env_report_has_versions_devices_and_optional_packages():
    report = env_report()
    assert f"- transformers: {metadata.version('transformers')}" in report
    assert "- device: " in report
    for name, purpose in OPTIONAL.items():
        assert f"- {name}: " in report and purpose in report
