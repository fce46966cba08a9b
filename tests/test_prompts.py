"""The one prompt-file reader (CLI, preference sampling, sweeps)."""

from __future__ import annotations

import io
import json

import pytest

from moddecode.errors import ConfigError
from moddecode.prompts import PromptItem, read_prompt_file

PROMPTS = ["How do I boil an egg?", "Name a cat, please", "Why is the sky blue?"]


def test_every_format_gives_the_same_prompts(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("id,prompt\n" + "".join(f'q{i},"{p}"\n' for i, p in enumerate(PROMPTS)))
    expected = [PromptItem(f"q{i}", p) for i, p in enumerate(PROMPTS)]
    assert read_prompt_file(jsonl) == read_prompt_file(csv_file) == expected

    text = tmp_path / "p.txt"
    text.write_text(f"  {PROMPTS[0]}\n\n{PROMPTS[1]}  \n   \n{PROMPTS[2]}\n")
    # one prompt per non-blank line, stripped, numbered by line
    assert read_prompt_file(text) == [PromptItem(n, p) for n, p in zip(["1", "3", "5"], PROMPTS)]


def test_ids_default_to_line_numbers_or_to_file_order(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(f'{{"prompt": "{PROMPTS[0]}"}}\n\n{{"prompt": "{PROMPTS[1]}", "id": "mine"}}\n'
                    f'{{"prompt": "{PROMPTS[2]}"}}\n')
    by_line, by_order = read_prompt_file(path), read_prompt_file(path, index_ids=True)
    assert [i.prompt for i in by_line] == [i.prompt for i in by_order] == PROMPTS
    assert [i.id for i in by_line] == ["1", "mine", "4"] and [i.id for i in by_order] == ["0", "mine", "2"]


def test_standard_input(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(PROMPTS) + "\n"))
    assert [i.prompt for i in read_prompt_file("-")] == PROMPTS


def test_fields_limit_and_formats(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "a", "text": "one"}\n{"key": "b", "text": "two"}\n{"key": "a", "text": "three"}\n')
    assert read_prompt_file(path, id_field="key", text_field="text", limit=2) == [PromptItem("a", "one"),
                                                                                   PromptItem("b", "two")]
    with pytest.raises(ConfigError, match=r"repeated in .*p.jsonl: \['a'\]"):  # the repeat lies past a limit of 2
        read_prompt_file(path, id_field="key", text_field="text")
    with pytest.raises(ConfigError, match=r"p.jsonl:1: no 'prompt' field \(it has \['key', 'text'\]\)"):
        read_prompt_file(path)
    with pytest.raises(ConfigError, match="the prompt limit must be a positive integer"):
        read_prompt_file(path, text_field="text", limit=0)
    text = tmp_path / "p.txt"
    text.write_text("hello\n")
    with pytest.raises(ConfigError, match="must end in .jsonl or .csv"):
        read_prompt_file(text, plain_text=False)


@pytest.mark.parametrize("content, message", [
    ('{"id": null, "prompt": "hi"}\n', r"p.jsonl:1: the prompt id is empty"),
    ('{"id": "x", "prompt": "   "}\n', r"p.jsonl:1: the prompt text must be a non-empty string"),
    ('{"id": "x", "prompt": 3}\n', r"p.jsonl:1: the prompt text must be a non-empty string, got 3"),
    ("\n\n", r"no prompts found in .*p.jsonl"),
    ('["not", "an", "object"]\n', r"p.jsonl:1: each line must be an object"),
])
def test_bad_files_name_the_place(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_prompt_file(path)
    with pytest.raises(ConfigError, match="prompts file not found"):
        read_prompt_file(tmp_path / "missing.jsonl")


def test_preference_sampling_reads_prompts_with_the_same_reader():
    from moddecode.train import prefs, read_prompts

    assert read_prompts is prefs.read_prompts is read_prompt_file and prefs.PromptItem is PromptItem
