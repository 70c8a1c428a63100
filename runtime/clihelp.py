"""One ``--help`` style for the console scripts: each option's default is shown once.

``argparse.ArgumentDefaultsHelpFormatter`` appends ``(default: None)`` even where an option has no
value by default or its help already says what happens without it. This formatter appends the default
only when there is one to show (not ``None``, not ``False``) and the help text does not mention it.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default is argparse.SUPPRESS
                or not action.option_strings):
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        return f"{text} (default: {default})"
