"""Command-line options that several commands take, said once: the noise suppressor (`--enhance NAME|off`),
the lip gate and the captions' language."""

from __future__ import annotations

import argparse

from avcall.pipelines.suppressors import DEFAULT as DEFAULT_ENHANCER

LIP_GATE_HELP = ("on (default, with a camera): another voice is held back (-30 dB) while your lips are still, in "
                 "the voice and the captions; off: every voice passes as the suppressor leaves it")

LANGUAGE_HELP = ("the captions' language: en (default: Whisper tiny.en), a Whisper language code (de, es, fr, ...: "
                 "Whisper base, multilingual, from the `multilingual` extra), or auto: detected on the first line")


def enhancer_choices() -> str:
    """The noise suppressors that ship here, for --help (the default first)."""
    from avcall.pipelines.features import enhancers
    from avcall.pipelines.suppressors import describe

    shipped = enhancers()
    return ("; ".join(f"{name} ({describe(name)})" for name in shipped) if shipped
            else "none ships on this machine (run scripts/setup.sh)")


def enhancer_arg(text: str) -> str:
    """A noise suppressor's name, or 'off' (whether it ships here is checked where the call is set up)."""
    from avcall.pipelines.features import enhancers
    from avcall.pipelines.suppressors import BACKENDS

    if text == "off" or text in BACKENDS:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a noise suppressor; choose one of "
                                     f"{', '.join(enhancers()) or 'none'}, or off")


def add_enhance_argument(parser: argparse.ArgumentParser, what: str, *, flag: bool = False) -> None:
    """`--enhance NAME|off`: `what` the suppressor does in this command. `flag`: off unless given, and a bare
    `--enhance` runs the default (a file's `avcall process`); else the default suppressor runs unless told off."""
    from avcall.pipelines.features import default_enhancer

    default = "off" if flag else default_enhancer()
    parser.add_argument("--enhance", metavar="NAME|off", type=enhancer_arg, default=default,
                        **({"nargs": "?", "const": DEFAULT_ENHANCER} if flag else {}),
                        help=f"{what}; NAME: {enhancer_choices()}; or off (default: {default})")
