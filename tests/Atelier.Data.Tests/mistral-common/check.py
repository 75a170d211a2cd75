"""Checks golden.json against mistral-common's own code.

For each conversation, renders it with mistral-common's request normaliser and its
InstructTokenizerV1/V2/V3/V7/V11/V13 over fake text tokenizers with the C# tests' tiny vocabularies
(tests/Atelier.Data.Tests/Support/TinyVocabularies.cs), applies mistral-finetune's loss mask and
final-call-id removal (finetune/data/tokenize.py), and compares with the tokens and mask that
MistralCommonGoldenTests requires of MistralInstructFormatter.

    PYTHONPATH=<mistral-common checkout>/src:. python3 check.py golden.json
"""
import json
import sys

import stubs  # noqa: F401  (must come before mistral_common)
from mistral_common.protocol.instruct.messages import (
    AssistantMessage, FinetuningAssistantMessage, SystemMessage, ToolMessage, UserMessage)
from mistral_common.protocol.instruct.normalize import (
    InstructRequestNormalizer, InstructRequestNormalizerV7, InstructRequestNormalizerV13)
from mistral_common.protocol.instruct.request import ChatCompletionRequest, InstructRequest
from mistral_common.protocol.instruct.tool_calls import FunctionCall, Tool, ToolCall
from mistral_common.tokens.tokenizers import instruct
from mistral_common.tokens.tokenizers.base import TokenizerVersion
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

TEKKEN_SPECIALS = [
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]", "[ARGS]", "[CALL_ID]"]
V3_CONTROL_PIECES = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]
CHAR_PIECES = ["\u2581", "\n"] + [chr(c) for c in range(0x21, 0x7F)]


class TinyTokenizer(Tekkenizer):
    """The byte tekken (text byte b is id b + 100) or the character SentencePiece model of the C# tests.

    It derives from Tekkenizer only because InstructTokenizerV13 requires one; none of its code runs.
    """

    def __init__(self, kind, version, control_pieces):
        self.kind, self._version, self.control_pieces = kind, version, control_pieces
        if kind == "tekken":
            self.specials = {s: i for i, s in enumerate(TEKKEN_SPECIALS)}
        else:
            self.specials = {"<unk>": 0, "<s>": 1, "</s>": 2}
            if control_pieces:
                self.specials.update({s: 3 + i for i, s in enumerate(V3_CONTROL_PIECES)})
        self._special_tokens_reverse_vocab = self.specials

    model_settings_builder = property(lambda self: None)
    bos_id = property(lambda self: 1)
    eos_id = property(lambda self: 2)
    version = property(lambda self: self._version)

    def get_special_token(self, s):
        return self.specials.get(s, -1)  # tokens a test never uses ([PREFIX]...) need not exist

    def encode(self, s, bos, eos):
        assert not bos and not eos
        if self.kind == "tekken":
            return [b + 100 for b in s.encode("utf-8")]
        if s == "":
            return []
        first = 3 + (len(V3_CONTROL_PIECES) if self.control_pieces else 0)
        return [first + CHAR_PIECES.index(c) for c in "\u2581" + s.replace(" ", "\u2581")]

    def decode(self, tokens, special_token_policy=None):
        return ""

    def _to_string(self, tokens):
        return ""


def message(m):
    role = m["role"]
    if role == "system":
        return SystemMessage(content=m["content"])
    if role == "user":
        return UserMessage(content=m["content"])
    if role == "tool":
        return ToolMessage(content=m["content"], tool_call_id=m.get("tool_call_id"), name=m.get("name"))
    calls = None
    if "tool_calls" in m:
        calls = []
        for c in m["tool_calls"]:
            arguments = c["function"]["arguments"]
            calls.append(ToolCall(id=c["id"], function=FunctionCall(
                name=c["function"]["name"], arguments=arguments if isinstance(arguments, str) else json.dumps(arguments))))
    return FinetuningAssistantMessage(content=m.get("content"), tool_calls=calls, weight=m.get("weight"))


VERSIONS = {
    "v1": ("sentencepiece", TokenizerVersion.v1, False, instruct.InstructTokenizerV1, InstructRequestNormalizer),
    "v2": ("tekken", TokenizerVersion.v2, True, instruct.InstructTokenizerV2, InstructRequestNormalizer),
    "v3sp": ("sentencepiece", TokenizerVersion.v3, True, instruct.InstructTokenizerV3, InstructRequestNormalizer),
    "v7": ("tekken", TokenizerVersion.v7, True, instruct.InstructTokenizerV7, InstructRequestNormalizerV7),
    "v11": ("tekken", TokenizerVersion.v11, True, instruct.InstructTokenizerV11, InstructRequestNormalizerV7),
    "v13": ("tekken", TokenizerVersion.v13, True, instruct.InstructTokenizerV13, InstructRequestNormalizerV13),
}


def render(version, example):
    kind, tokenizer_version, control_pieces, tokenizer_class, normalizer_class = VERSIONS[version]
    tokenizer = tokenizer_class(TinyTokenizer(kind, tokenizer_version, control_pieces))
    normalizer = normalizer_class(UserMessage, FinetuningAssistantMessage, ToolMessage, SystemMessage, InstructRequest, None)
    tools = [Tool(**t) for t in example.get("tools", [])] or None
    request = normalizer.from_chat_completion_request(
        ChatCompletionRequest(messages=[message(m) for m in example["messages"]], tools=tools))

    # mistral-finetune (maybe_remove_call_id): the final turn's call ids are not trained. v13 never
    # renders ids and asserts that calls have one, so they stay.
    last = request.messages[-1]
    if isinstance(last, AssistantMessage) and last.tool_calls and tokenizer_version != TokenizerVersion.v13:
        last.tool_calls = [ToolCall(function=c.function) for c in last.tool_calls]

    users = [i for i, m in enumerate(request.messages) if isinstance(m, UserMessage)]
    tokens, mask = [1], [False]
    for i, m in enumerate(request.messages):
        if isinstance(m, UserMessage):
            part = tokenizer.encode_user_message(m, request.available_tools, i == users[-1], i == users[0], system_prompt=request.system_prompt)[0]
            trained = False
        elif isinstance(m, ToolMessage):
            part, trained = tokenizer.encode_tool_message(m, i < users[-1])[0], False
        elif isinstance(m, SystemMessage):
            part, trained = tokenizer.encode_system_message(m)[0], False
        else:
            part = tokenizer.encode_assistant_message(m, i < users[-1], False)
            trained = m.weight is None or m.weight == 1
        tokens += part
        mask += [trained] * len(part)

    # The per-message path must agree with mistral-common's whole-request encoding.
    assert tokenizer.encode_instruct(request).tokens == tokens
    return tokens, mask


def main(path):
    failed = 0
    cases = json.load(open(path, encoding="utf-8"))
    for case in cases:
        tokens, mask = render(case["version"], json.loads(case["line"]))
        ok = tokens == case["tokens"] and mask == case["mask"]
        failed += not ok
        print("ok  " if ok else "FAIL", case["name"])
        if not ok:
            print("  mistral-common:", tokens, mask)
            print("  golden.json:   ", case["tokens"], case["mask"])
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "golden.json"))
