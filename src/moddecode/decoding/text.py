"""Decoded text of a sequence: stop strings, and what is safe to stream so far."""

from __future__ import annotations


def decode_until_stop(tokenizer, token_ids: list[int], stop: tuple[str, ...]) -> tuple[str, bool]:
    """The decoded text cut before the first stop string, and whether one was found."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    cut = min((at for at in (text.find(s) for s in stop) if at >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TextTracker:
    """Decoded text of one sequence: stop strings, and what is safe to stream so far."""

    def __init__(self, tokenizer, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.token_ids: list[int] = []
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def push(self, token_id: int) -> None:
        self.token_ids.append(token_id)
        self.text, self.stopped = decode_until_stop(self.tokenizer, self.token_ids, self.stop)

    def delta(self, final: bool = False) -> str:
        """Text not yet streamed, holding back a partial UTF-8 character or a possible stop-string start."""
        end = len(self.text)
        if not final:
            if self.text.endswith("\ufffd"):
                end -= 1
            for s in self.stop:
                for k in range(min(len(s) - 1, end), 0, -1):
                    if self.text[:end].endswith(s[:k]):
                        end = min(end, len(self.text[:end]) - k)
                        break
        end = max(end, self.emitted)
        piece = self.text[self.emitted:end]
        self.emitted = end
        return piece
