"""Drives a modchain node's OpenAI-compatible API with the official `openai`
Python client, unchanged but for its base URL and key (the node's bearer
token). Prints one JSON object with what it saw; exits non-zero on the first
thing that is wrong.

Usage: openai_client.py URL TOKEN MODEL
"""
import json
import math
import sys

import openai
from openai import OpenAI

url, token, model = sys.argv[1:4]
# No retries: a retried request would be a second job on the network, and
# an error must reach this script as the node answered it.
client = OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=120)
seen = {}


def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, "seen": seen}, default=str))
        sys.exit(1)


# The network's models.
names = [m.id for m in client.models.list().data]
seen["models"] = names
check(model in names, f"{model} in /v1/models")
check(client.models.retrieve(model).id == model, "a model retrieved by name")

sampling = {"temperature": 0, "max_tokens": 32, "seed": 1}
messages = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]

# Chat, not streamed.
r = client.chat.completions.create(model=model, messages=messages, **sampling)
answer = r.choices[0].message.content
seen["chat"] = answer
check(r.object == "chat.completion" and r.model == model, "a chat.completion object")
check(r.choices[0].message.role == "assistant" and "Paris" in answer, "chat answers Paris")
check(r.choices[0].finish_reason in ("stop", "length"), "a finish reason")
u = r.usage
seen["chat_usage"] = u.to_dict()
check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 32, "chat counts tokens")
check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "total = prompt + completion")
check(r.to_dict().get("modchain", {}).get("receipt_id"), "the job's receipt id comes along")

# Chat, streamed, with the usage chunk asked for.
chunks = list(
    client.chat.completions.create(
        model=model,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **sampling,
    )
)
pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
streamed = "".join(pieces)
seen["chat_stream"] = {"chunks": len(chunks), "text_chunks": len(pieces), "text": streamed}
check(all(c.object == "chat.completion.chunk" for c in chunks), "chat.completion.chunk objects")
check(chunks[0].choices[0].delta.role == "assistant", "the first chunk names the role")
check(len(pieces) >= 2, "the text came in more than one chunk")
check(streamed == answer, "the same seed gives the same text streamed or not")
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check(finishes == [r.choices[0].finish_reason], "one chunk carries the finish reason")
check(chunks[-1].usage and chunks[-1].usage.completion_tokens == u.completion_tokens,
      "the last chunk carries the usage")

# Completions (a prompt continued as it is), both ways.
prompt = "The capital of France is the city of"
c = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
seen["completion"] = c.choices[0].text
check(c.object == "text_completion" and c.choices[0].text.strip(), "completions give text")
check(c.usage.completion_tokens > 0 and c.usage.prompt_tokens > 0, "completions count tokens")
parts = list(client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0,
                                       stream=True))
streamed = "".join(p.choices[0].text for p in parts if p.choices)
seen["completion_stream"] = {"chunks": len(parts), "text": streamed}
check(len(parts) >= 2 and streamed == c.choices[0].text, "completions stream the same text")

# Embeddings: the client asks base64 by default and decodes it; floats too.
texts = ["Paris is the capital of France.", "Berlin is the capital of Germany."]
e = client.embeddings.create(model=model, input=texts)
vectors = [d.embedding for d in e.data]
seen["embeddings"] = {"count": len(vectors), "dims": len(vectors[0]) if vectors else 0}
check(len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0, "one vector per input")
check(abs(math.sqrt(sum(x * x for x in vectors[0])) - 1) < 1e-3, "vectors are normalised")
check(e.usage.prompt_tokens > 0 and e.usage.total_tokens == e.usage.prompt_tokens,
      "embeddings count tokens")
f = client.embeddings.create(model=model, input=texts[0], encoding_format="float")
check(max(abs(a - b) for a, b in zip(f.data[0].embedding, vectors[0])) < 1e-5,
      "float and base64 give the same vector")

# An unknown model: 404 in OpenAI's shape, naming what the network offers.
try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
    check(False, "an unknown model is refused")
except openai.NotFoundError as err:
    seen["unknown_model"] = {"status": err.status_code, "code": err.code, "message": err.message}
    check(err.status_code == 404 and err.code == "model_not_found" and err.param == "model",
          "404 model_not_found on `model`")
    check(model in err.message, "the error lists the offered models")

# A prompt over the model's context length: 400, naming the limit.
try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "word " * 9000}], max_tokens=4
    )
    check(False, "an over-long prompt is refused")
except openai.BadRequestError as err:
    seen["too_long"] = {"status": err.status_code, "type": err.type, "message": err.message}
    check(err.type == "invalid_request_error", "an invalid_request_error")
    check("context length" in err.message, "the error names the context length")

# A wrong key: 401, as OpenAI answers it.
try:
    OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
        model=model, messages=messages, max_tokens=4
    )
    check(False, "a wrong key is refused")
except openai.AuthenticationError as err:
    seen["wrong_key"] = {"status": err.status_code, "code": err.code}
    check(err.code == "invalid_api_key", "invalid_api_key")

# Reading needs the key too: the model list is refused without it.
try:
    OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "listing models with a wrong key is refused")
except openai.AuthenticationError as err:
    seen["models_wrong_key"] = {"status": err.status_code, "code": err.code}
    check(err.status_code == 401, "401 for the model list")

print(json.dumps({"ok": True, "seen": seen}, default=str))
