"""Lets mistral-common's tokenizer code import without its heavy optional dependencies.

check.py only uses the instruct tokenizers and the request normaliser with a fake text tokenizer,
so numpy, tiktoken, sentencepiece and PIL are never called: they are replaced by inert modules.
"""
import importlib.metadata
import sys
import types


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything

    def __getitem__(cls, key):
        return Anything

    def __or__(cls, other):
        return Anything

    def __ror__(cls, other):
        return Anything


class Anything(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        pass


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything


for _name in ["numpy", "numpy.typing", "tiktoken", "sentencepiece", "PIL", "PIL.Image"]:
    sys.modules.setdefault(_name, _InertModule(_name))

if "pydantic_extra_types" not in sys.modules:
    sys.modules["pydantic_extra_types"] = types.ModuleType("pydantic_extra_types")
    _language = types.ModuleType("pydantic_extra_types.language_code")
    _language.LanguageAlpha2 = str
    sys.modules["pydantic_extra_types.language_code"] = _language

# A source checkout is not an installed distribution: answer mistral_common/__init__'s version lookup.
_version = importlib.metadata.version
importlib.metadata.version = lambda name: "0+checkout" if name == "mistral-common" else _version(name)
