"""Upstream's flag spellings (``do_tts.py``, ``read.py``, ``tortoise_tts.py`` of tortoise-tts 3.0.0), accepted so
scripts written for upstream run unchanged: they are rewritten into ours before parsing, and not listed in
``--help`` (one line of each verb's epilog says they are accepted).

Upstream declares its switches ``type=bool``, so there ``--half False`` is true; here ``True``/``False`` (and
1/0, yes/no) mean what they say.
"""

from __future__ import annotations

__all__ = ["UPSTREAM_NOTE", "ours"]

UPSTREAM_NOTE = ("upstream tortoise-tts spellings are accepted too: --text, --textfile, --output_path, --model_dir,\n"
                 "--cvvp_amount, and --kv_cache, --half, --use_deepspeed, --produce_debug_state with True or False")
RENAMED = {"--output_path": "--output-dir", "--model_dir": "--models-dir", "--cvvp_amount": "--cvvp-amount"}
SWITCHES = {"--kv_cache": "kv-cache", "--half": "half", "--use_deepspeed": "deepspeed",
            "--produce_debug_state": "produce-debug-state"}
POSITIONAL = ("--text", "--textfile")  # upstream's text (do_tts.py) and text file (read.py) flags
TRUE, FALSE = ("true", "1", "yes", "y", "on"), ("false", "0", "no", "n", "off")


def _switch(flag: str, value: str) -> str:
    name = SWITCHES[flag]
    if value.strip().lower() in TRUE:
        return f"--{name}"
    if value.strip().lower() in FALSE:
        return f"--no-{name}"
    raise ValueError(f"{flag} takes True or False, not {value!r}.")


def ours(argv: list[str]) -> list[str]:
    """``argv`` with upstream's spellings replaced by ours (ValueError, one sentence, for a bad switch value)."""
    out: list[str] = []
    positional: list[str] = []
    items = iter(argv)
    for item in items:
        flag, has_value, value = item.partition("=")
        if flag in RENAMED:
            out.append(RENAMED[flag] + (f"={value}" if has_value else ""))
        elif flag in SWITCHES or flag in POSITIONAL:
            if not has_value:
                value = next(items, None)
                if value is None:
                    raise ValueError(f"{flag} needs a value.")
            if flag in SWITCHES:
                out.append(_switch(flag, value))
            else:
                positional.append(value)
        else:
            out.append(item)
    return out + positional
