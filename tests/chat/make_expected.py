#!/usr/bin/env python3
"""Remake the expected chat-template renderings in tests/chat/*.json with Hugging Face transformers.

For each template below: a folder with the fixture tokenizer (models/fixtures/llama/tokenizer.json)
and a tokenizer_config.json holding the template and its special tokens, loaded with
AutoTokenizer.from_pretrained(folder); every conversation is rendered with
apply_chat_template(messages, tokenize=False, add_generation_prompt=...) and stored (or the
exception message the template raises). tests/chat_templates.rs builds the same folders and
compares specdec's renderings byte for byte.

The templates are the public chat templates of the models named (tokenizer_config.json on the
Hugging Face hub), plus one exercising tojson and Python string methods.

Usage (from the repository root): /work/main/.venv-builder/bin/python tests/chat/make_expected.py
(needs transformers and jinja2).
"""

import json
import os
import shutil
import tempfile

import transformers
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "models", "fixtures", "llama", "tokenizer.json")
OUT = os.path.join(ROOT, "tests", "chat")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

PYMETHODS = """{%- for m in messages %}
  {{- m.role.upper() }}/{{ m.role.title() }}/{{ m.role.lower() }}: {{ m.content.strip() }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}
  {%- if m.content.strip().startswith('Hi') %} [greeting]{% endif %}
  {%- if m.content.strip().endswith('?') %} [question]{% endif %}
  {%- if 'wörld' in m.content %} [world]{% endif %}
{{ '\\n' }}
  {%- if loop.last %}{% break %}{% endif %}
{%- endfor %}
{{- messages | tojson }}
{{ messages[-1] | tojson(indent=2) }}
{{ messages | map(attribute='role') | list | tojson(separators=(',', ':')) }}
{{- '\\n' + (add_generation_prompt | string) + ' ' + (messages | length | string) }}
{%- set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %} users={{ ns.n }}
{%- for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %} {{ loop.index }}{% endfor %}
"""

LLAMA3_SPECIAL = {
    "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "eos_token": {"__type": "AddedToken", "content": "<|eot_id|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
}

TEMPLATES = [
    # name, chat_template field of tokenizer_config.json, special tokens
    ("llama3", LLAMA3, LLAMA3_SPECIAL),
    ("qwen2", QWEN2, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}),
    ("qwen2_5", QWEN25, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}),
    ("phi3", PHI3, {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    ("mistral", MISTRAL, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    # The list form: "default" is used.
    (
        "zephyr_list",
        [{"name": "tool_use", "template": "{{ 'tools!' }}"}, {"name": "default", "template": ZEPHYR}],
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    ),
    ("pymethods", PYMETHODS, {"bos_token": "<s>", "eos_token": "</s>"}),
]

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello!"}],
    "system_user_assistant_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Hi, what is 2 + 2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "  And 3 + 3?  \n"},
    ],
    "user_assistant_user": [
        {"role": "user", "content": "Write \"hello\" in French."},
        {"role": "assistant", "content": "Bonjour, wörld! \u2014 \U0001F600\n"},
        {"role": "user", "content": "Thanks\tagain\\ <b>&</b>?"},
    ],
}


def main():
    print("transformers", transformers.__version__)
    with open(TOKENIZER, encoding="utf-8") as f:
        tokenizer_json = f.read()
    for name, template, special in TEMPLATES:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
                f.write(tokenizer_json)
            config = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template}
            config.update(special)
            with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(config, f, ensure_ascii=False, indent=2)
            tok = AutoTokenizer.from_pretrained(d)
            cases = []
            for conv_name, messages in CONVERSATIONS.items():
                for agp in (False, True):
                    case = {"conversation": conv_name, "add_generation_prompt": agp}
                    try:
                        case["expected"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=agp)
                    except Exception as e:  # the template's raise_exception
                        case["error"] = str(e)
                    cases.append(case)
        out = {
            "name": name,
            "generated_by": f"tests/chat/make_expected.py with transformers {transformers.__version__}",
            "tokenizer_config": config,
            "conversations": CONVERSATIONS,
            "cases": cases,
        }
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(name, len(cases), "cases", sum("error" in c for c in cases), "errors")

    # Special tokens in encode/decode: the fixture tokenizer with a TemplateProcessing
    # post-processor that puts <|endoftext|> (id 0) first, as a BOS.
    tj = json.loads(tokenizer_json)
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    bos_dir = os.path.join(OUT, "bos")
    shutil.rmtree(bos_dir, ignore_errors=True)
    os.makedirs(bos_dir)
    with open(os.path.join(bos_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "chat_template": LLAMA3.replace("<|eot_id|>", "<|endoftext|>")}
    with open(os.path.join(bos_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    tok = AutoTokenizer.from_pretrained(bos_dir)
    text = "def f(x):\n    return x"
    with_special = tok.encode(text, add_special_tokens=True)
    without = tok.encode(text, add_special_tokens=False)
    prompt = tok.apply_chat_template(CONVERSATIONS["user"], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    expected = {
        "generated_by": f"tests/chat/make_expected.py with transformers {transformers.__version__}",
        "text": text,
        "with_special_tokens": with_special,
        "without_special_tokens": without,
        "decode_keep_special": tok.decode(with_special, skip_special_tokens=False),
        "decode_skip_special": tok.decode(with_special, skip_special_tokens=True),
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "prompt_decode_keep_special": tok.decode(prompt_ids, skip_special_tokens=False),
        "tokens": {t: tok.convert_tokens_to_ids(t) for t in ["<|endoftext|>", "def", "Ġf", "ĠĠĠ"]},
    }
    with open(os.path.join(bos_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("bos", with_special[:4], without[:4])


if __name__ == "__main__":
    main()
