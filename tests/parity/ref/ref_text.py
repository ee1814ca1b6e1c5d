"""Reference side of tests/parity/test_text.py: upstream cleaning, tokenizing and splitting.

args: {"texts": [str], "splits": [{"text": str} or {"data_file": name}, with "desired" and "max"]}
Writes results.json: {"cleaned": [...], "ids": [[...]], "decoded": [...], "data_texts": {name: text},
"pieces": [[...]]}.
"""

import json
import os

import tortoise
from tortoise.utils.text import split_and_recombine_text
from tortoise.utils.tokenizer import VoiceBpeTokenizer, english_cleaners

from _common import read_args, workdir

DATA = os.path.join(os.path.dirname(tortoise.__file__), "data")

args = read_args()
tokenizer = VoiceBpeTokenizer()
ids = [tokenizer.encode(t) for t in args["texts"]]
data_texts = {}
pieces = []
for case in args["splits"]:
    if "data_file" in case:
        with open(os.path.join(DATA, case["data_file"]), encoding="utf-8") as handle:
            data_texts[case["data_file"]] = text = handle.read()
    else:
        text = case["text"]
    pieces.append(split_and_recombine_text(text, desired_length=case["desired"], max_length=case["max"]))

result = {
    "cleaned": [english_cleaners(t) for t in args["texts"]],
    "ids": ids,
    "decoded": [tokenizer.decode(i) for i in ids],
    "data_texts": data_texts,
    "pieces": pieces,
}
(workdir() / "results.json").write_text(json.dumps(result))
