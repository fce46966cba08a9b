"""Decoding over the combined MOD score: options, strategies (greedy, sample, beam), text and outputs.

    config.py       DecodingConfig: every decoding option, validated, with from_mapping/merged
    strategies.py   the registry: name -> Strategy (greedy.py, sampling.py, beam.py)
    loop.py         the token-by-token loop greedy and sampling share; rows join and leave between steps
    combiner.py     member log-probs -> MOD scores per live row (calls combine_logprobs)
    text.py         stop strings and what is safe to stream
    outputs.py      Generation, TextDelta, TokenDiagnostics
    run.py          DecodeRun (what a strategy decodes with), Strategy, RowForward (the engine's rows)
"""

from .config import SCOPES, DecodingConfig
from .outputs import Generation, TextDelta, TokenDiagnostics, TokenLogprob
from .loop import DecodeLoop, LoopEvent, RowSpec
from .run import DecodeRun, RowForward, Strategy
from .strategies import STRATEGIES, get_strategy

__all__ = ["DecodingConfig", "SCOPES", "Generation", "TextDelta", "TokenDiagnostics", "TokenLogprob", "DecodeRun", "RowForward", "DecodeLoop", "LoopEvent", "RowSpec",
           "Strategy", "STRATEGIES", "get_strategy"]
