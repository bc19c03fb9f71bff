"""Drives a modchain node's Ollama-compatible API with the official `ollama`
Python client, unchanged: the bearer token goes as a header. Prints one JSON
object with what it saw; exits non-zero on the first thing that is wrong.

Usage: ollama_client.py URL TOKEN MODEL
"""
import json
import sys
import time
from datetime import datetime

import ollama

url, token, model = sys.argv[1:4]
client = ollama.Client(host=url, headers={"Authorization": f"Bearer {token}"})
seen = {}


def check(cond, what):
    if not cond:
        print(json.dumps({"failed": what, "seen": seen}, default=str))
        sys.exit(1)


# The network's models.
tags = client.list()
names = [m.model for m in tags.models]
seen["tags"] = names
check(model in names, f"{model} in /api/tags")
shown = client.show(model)
seen["show"] = shown.details.quantization_level
check(shown.details.quantization_level, "show gives details")

options = {"temperature": 0, "num_predict": 32, "seed": 1}
question = "What is the capital of France? Answer in one sentence."

# generate, not streaming.
r = client.generate(model=model, prompt=question, options=options, stream=False)
seen["generate"] = r.response
check("Paris" in r.response, "generate answers Paris")
check(r.done and r.eval_count and r.eval_count > 0, "generate counts tokens")
check(r.prompt_eval_count and r.prompt_eval_count > 0, "generate counts prompt tokens")

# generate, streaming: several chunks, and the first piece of text reaches
# this client before the node has even produced the last one. Both times are
# the same machine's wall clock (`created_at` is the node's, stamped as it
# writes the chunk), so the comparison is one of cause and effect, not of
# speed: an answer buffered anywhere on the way (provider, network, HTTP)
# would reach this client only after its last piece was made.
chunks = []
arrived = []
for c in client.generate(model=model, prompt=question, options=options, stream=True):
    arrived.append(time.time())
    chunks.append(c)
text = "".join(c.response for c in chunks)
pieces = [i for i, c in enumerate(chunks) if not c.done and c.response]
seen["generate_stream"] = {
    "chunks": len(chunks),
    "text_chunks": len(pieces),
    "text": text,
    "first_text_arrived": arrived[pieces[0]] if pieces else None,
    "last_text_created": chunks[pieces[-1]].created_at if pieces else None,
}
check(len(chunks) >= 3, "streamed in several chunks")
check(chunks[-1].done and not chunks[0].done, "only the last chunk is done")
check(len(pieces) >= 2, "the text came in more than one chunk")
last_made = datetime.fromisoformat(chunks[pieces[-1]].created_at).timestamp()
check(
    arrived[pieces[0]] < last_made,
    "the first piece of text arrived before the node made the last one",
)
check(text == r.response, "the same seed gives the same text streamed or not")

# chat, both ways.
messages = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]
c = client.chat(model=model, messages=messages, options=options, stream=False)
seen["chat"] = c.message.content
check(c.message.role == "assistant" and "Paris" in c.message.content, "chat answers Paris")
parts = list(client.chat(model=model, messages=messages, options=options, stream=True))
streamed = "".join(p.message.content for p in parts)
seen["chat_stream"] = {"chunks": len(parts), "text": streamed}
check(len(parts) >= 3 and streamed == c.message.content, "chat streams the same text")

# An unknown model: a clear error naming what the network offers.
try:
    client.generate(model="no-such-model", prompt="hi", stream=False)
    check(False, "an unknown model is refused")
except ollama.ResponseError as e:
    seen["unknown_model"] = {"status": e.status_code, "error": e.error}
    check(e.status_code == 404 and model in e.error, "404 listing the offered models")

# A prompt over the model's context length: a clear error, not a hang.
try:
    client.generate(model=model, prompt="word " * 9000, options={"num_predict": 4}, stream=False)
    check(False, "an over-long prompt is refused")
except ollama.ResponseError as e:
    seen["too_long"] = {"status": e.status_code, "error": e.error}
    check("context length" in e.error, "the error names the context length")

# Without the token header nothing is answered, not even the model list.
try:
    ollama.Client(host=url).list()
    check(False, "the model list without the token is refused")
except ollama.ResponseError as e:
    seen["no_token"] = {"status": e.status_code, "error": e.error}
    check(e.status_code == 401 and "api.token" in e.error, "401 naming api.token")

print(json.dumps({"ok": True, "seen": seen}, default=str))
