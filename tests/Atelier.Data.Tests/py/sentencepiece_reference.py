"""Google's sentencepiece as the reference for Atelier.Data.Tests (run with Debian's /usr/bin/python3).

  train CORPUS PREFIX VOCAB_SIZE [OPTIONS_JSON]
                                   trains a BPE model configured as Mistral's v1 tokenizer.model
                                   (byte fallback, digits split, dummy prefix, no normalisation,
                                   extra whitespace kept) into PREFIX.model; OPTIONS_JSON overrides
                                   trainer options (e.g. {"remove_extra_whitespaces": true})
  encode MODEL                     stdin: a JSON array of texts; stdout: a JSON array of id lists
"""
import json
import sys

import sentencepiece as spm


def train(corpus, prefix, vocab_size, overrides="{}"):
    options = dict(
        input=corpus,
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=int(vocab_size),
        hard_vocab_limit=False,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        split_by_whitespace=True,
        character_coverage=0.98,
        max_sentence_length=1 << 16,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=["[INST]", "[/INST]"],
        num_threads=1,
        minloglevel=2,
    )
    options.update(json.loads(overrides))
    spm.SentencePieceTrainer.train(**options)


def encode(model):
    processor = spm.SentencePieceProcessor(model_file=model)
    texts = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    json.dump([processor.encode(text) for text in texts], sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(*sys.argv[2:6])
    elif sys.argv[1] == "encode":
        encode(sys.argv[2])
    else:
        sys.exit("usage: sentencepiece_reference.py train CORPUS PREFIX VOCAB_SIZE | encode MODEL")
