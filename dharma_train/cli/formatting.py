"""One help style for every sub-command: each option's default shown, unless it is None or already described."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's '(default: X)' suffix, left off required options, None defaults and help that names its own."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)
