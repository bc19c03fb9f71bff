"""An MCP agent's view of Modchain, through the official Python SDK (`mcp`).

Started by node/tests/mcp.rs against a running test network:

    python client.py MODCHAIN_BINARY NODE_DATA_DIR PEER_ID=NODE_ID[,...] EMPTY_DIR \
        MODEL MODEL_PROVIDER_NODE_ID IMAGE

It launches `modchain --data-dir NODE_DATA_DIR mcp` over stdio, lists the
tools, runs a WebAssembly job, a docker job (in IMAGE, already on every
provider) and an LLM prompt (to MODEL, which only MODEL_PROVIDER serves)
through them, reads the jobs back, looks at the network, checks that bad calls
come back as tool errors, and that a data directory with no node running
gives an error saying how to start one.
Progress goes to stderr; any failed check raises and exits non-zero.
"""

import asyncio
import json
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

EXPECTED_TOOLS = {
    "submit_wasm",
    "submit_docker",
    "submit_llm",
    "job_status",
    "job_logs",
    "job_result",
    "cancel_job",
    "list_jobs",
    "list_providers",
    "list_models",
    "balance",
    "reputation",
}

GREETING = "hello from an MCP agent"

# WASI preview 1: writes the greeting and a newline to stdout (fd 1).
HELLO_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "%s\\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const %d))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
""" % (GREETING, len(GREETING) + 1)

# Runs until stopped: something to cancel.
SPIN_WAT = '(module (func (export "_start") (loop (br 0))))'

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.2f}s] {msg}", file=sys.stderr, flush=True)


def attr(obj, snake, camel):
    """A result field by its v2 (snake_case) or v1 (camelCase) name."""
    if hasattr(obj, snake):
        return getattr(obj, snake)
    return getattr(obj, camel)


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def call(session, name, args):
    """A tool call that must succeed; returns its JSON answer."""
    result = await session.call_tool(name, args)
    text = text_of(result)
    if attr(result, "is_error", "isError"):
        raise AssertionError(f"{name}({json.dumps(args)[:200]}) failed: {text}")
    data = json.loads(text)
    structured = attr(result, "structured_content", "structuredContent")
    assert structured == data, f"{name}: structured content differs from the text: {structured!r}"
    return data


async def call_error(session, name, args):
    """A tool call that must come back as a tool error; returns its message."""
    result = await session.call_tool(name, args)
    text = text_of(result)
    assert attr(result, "is_error", "isError"), f"{name}({args}) should be an error, got: {text}"
    assert text.strip(), f"{name}({args}): an error with no message"
    log(f"{name} error, as expected: {text}")
    return text


def server(binary, data_dir):
    return StdioServerParameters(
        command=binary,
        args=["--data-dir", data_dir, "mcp"],
        env={"RUST_LOG": "warn"},
    )


async def agent(binary, data_dir, peers, model, model_provider, image):
    async with stdio_client(server(binary, data_dir)) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            info = attr(init, "server_info", "serverInfo")
            assert info.name == "modchain", f"server name {info.name!r}"
            assert init.instructions and "modchain" in init.instructions.lower()
            log(f"initialized: {info.name} {info.version}, protocol {attr(init, 'protocol_version', 'protocolVersion')}")

            # The tools, each with a description and an input schema.
            tools = (await session.list_tools()).tools
            names = {t.name for t in tools}
            missing = EXPECTED_TOOLS - names
            assert not missing, f"tools missing: {sorted(missing)} (have {sorted(names)})"
            for t in tools:
                schema = attr(t, "input_schema", "inputSchema")
                assert isinstance(schema, dict) and schema.get("type") == "object", f"{t.name}: schema {schema!r}"
                assert t.description and len(t.description) > 20, f"{t.name}: description {t.description!r}"
            wasm_schema = next(attr(t, "input_schema", "inputSchema") for t in tools if t.name == "submit_wasm")
            for field in ["wat", "wasm_base64", "args", "timeout_seconds", "max_price", "wait"]:
                assert field in wasm_schema["properties"], f"submit_wasm schema lacks {field}: {wasm_schema}"
            docker_schema = next(attr(t, "input_schema", "inputSchema") for t in tools if t.name == "submit_docker")
            assert docker_schema.get("required") == ["image"], docker_schema
            log(f"{len(tools)} tools listed: {sorted(names)}")

            # A job, run to its end in one call.
            done = await call(session, "submit_wasm", {"wat": HELLO_WAT, "wait": True, "timeout_seconds": 30})
            assert done["state"] == "completed", f"job did not complete: {done}"
            assert done["ended"] is True, done
            assert done["exit_code"] == 0, done
            assert GREETING in (done["stdout"] or ""), f"stdout: {done['stdout']!r}"
            assert done["provider"] in peers.values(), f"provider {done['provider']} is not a node of the network"
            job_id = done["job_id"]
            log(f"submit_wasm ran {job_id[:12]}… on {str(done['provider'])[:12]}…: {done['stdout'].strip()!r}")

            status = await call(session, "job_status", {"job_id": job_id})
            assert status["state"] == "completed", status
            assert status["provider"], status
            states = [h["state"] for h in status["history"]]
            assert states and states[-1] == "completed", states
            assert GREETING in status["stdout"], status
            log(f"job_status: {' → '.join(states)}")

            logs = await call(session, "job_logs", {"job_id": job_id})
            assert GREETING in logs["logs"], logs
            followed = await call(session, "job_logs", {"job_id": job_id, "follow": True, "wait_seconds": 10})
            assert GREETING in followed["logs"] and followed["job_ended"] is True, followed

            result = await call(session, "job_result", {"job_id": job_id})
            assert result["exit_code"] == 0 and GREETING in result["stdout"], result
            assert isinstance(result["outputs"], list), result
            log(f"job_result: {result['exit']}, {len(result['outputs'])} outputs, digest {result['result_digest'][:12]}…")

            # A docker job, run to its end in one call: output, exit code and
            # an output file come back.
            ran = await call(
                session,
                "submit_docker",
                {
                    "image": image,
                    "command": ["sh", "-c", f"echo {GREETING} in docker; echo result > /outputs/answer.txt; exit 3"],
                    "wait": True,
                    "timeout_seconds": 60,
                },
            )
            assert ran["state"] == "completed" and ran["ended"] is True, f"docker job did not complete: {ran}"
            assert ran["exit_code"] == 3, ran
            assert f"{GREETING} in docker" in (ran["stdout"] or ""), f"stdout: {ran['stdout']!r}"
            assert ran["provider"] in peers.values(), f"provider {ran['provider']} is not a node of the network"
            assert ran["receipt_id"], ran
            docker_result = await call(session, "job_result", {"job_id": ran["job_id"]})
            assert [o["name"] for o in docker_result["outputs"]] == ["answer.txt"], docker_result
            log(f"submit_docker ran {ran['job_id'][:12]}… on {str(ran['provider'])[:12]}…: exit {ran['exit_code']}")

            # An LLM prompt, answered to its end in one call by the one
            # provider serving the model.
            answered = await call(
                session,
                "submit_llm",
                {
                    "model": model,
                    "prompt": "What is the capital of France? Answer in one sentence.",
                    "temperature": 0,
                    "max_tokens": 32,
                    "wait": True,
                    "timeout_seconds": 120,
                },
            )
            assert answered["state"] == "completed" and answered["ended"] is True, f"llm job did not complete: {answered}"
            assert answered["exit_code"] == 0, answered
            assert "Paris" in (answered["stdout"] or ""), f"the answer: {answered['stdout']!r}"
            assert answered["provider"] == model_provider, f"answered by {answered['provider']}, not {model_provider}"
            assert answered["receipt_id"], answered
            log(f"submit_llm answered {answered['job_id'][:12]}…: {answered['stdout'].strip()!r}")

            jobs = await call(session, "list_jobs", {})
            assert job_id in [j["job_id"] for j in jobs["jobs"]], jobs
            completed = await call(session, "list_jobs", {"state": "completed"})
            assert all(j["state"] == "completed" for j in completed["jobs"]), completed

            # The network.
            providers = await call(session, "list_providers", {})
            listed = {p["peer_id"]: p for p in providers["providers"]}
            for peer in peers:
                assert peer in listed, f"{peer} not among the providers: {sorted(listed)}"
                adapters = [a["name"] for a in listed[peer]["adapters"]]
                assert "wasm" in adapters, f"{peer} adapters {adapters}"
                assert listed[peer]["hardware"]["cpu"]["threads"] >= 1, listed[peer]
            wasm_only = await call(session, "list_providers", {"adapter": "wasm"})
            assert wasm_only["count"] >= len(peers), wasm_only
            nobody = await call(session, "list_providers", {"adapter": "no-such-adapter"})
            assert nobody["count"] == 0, nobody
            log(f"list_providers: {providers['count']} providers")

            models = await call(session, "list_models", {})
            assert isinstance(models["models"], list) and models["count"] == len(models["models"]), models
            offered = [m for m in models["models"] if m["name"] == model]
            assert offered, f"{model} not among the models: {models}"
            serving = [peers.get(p) for p in offered[0]["providers"]]
            assert serving == [model_provider], f"{model} served by {serving}, not only by {model_provider}"
            log(f"list_models: {models['count']} models")

            balance = await call(session, "balance", {})
            assert isinstance(balance["balance_micro"], int) and balance["node_id"], balance
            other = next(iter(peers))
            other_balance = await call(session, "balance", {"node": other})
            assert other_balance["node_id"] == peers[other], other_balance
            log(f"balance: {balance['balance']} credits")

            reputation = await call(session, "reputation", {})
            assert isinstance(reputation["reputation"], list), reputation

            # Cancelling a job that would run forever.
            spin = await call(session, "submit_wasm", {"wat": SPIN_WAT, "timeout_seconds": 120})
            spin_id = spin["job_id"]
            await call(session, "cancel_job", {"job_id": spin_id})
            deadline = time.monotonic() + 60
            while True:
                state = (await call(session, "job_status", {"job_id": spin_id}))["state"]
                if state == "cancelled":
                    break
                assert state not in ("completed", "failed"), f"cancelled job ended {state}"
                assert time.monotonic() < deadline, f"job still {state} a minute after cancel_job"
                await asyncio.sleep(0.2)
            log("cancel_job: the spinning job is cancelled")

            # Bad calls come back as tool errors with the reason.
            msg = await call_error(session, "job_status", {"job_id": "not-a-job"})
            assert "not a job id" in msg, msg
            msg = await call_error(session, "job_status", {"job_id": "0" * 64})
            assert "no job" in msg, msg
            msg = await call_error(session, "job_result", {"job_id": "0" * 64})
            assert "no job" in msg, msg
            msg = await call_error(session, "submit_wasm", {"wait": True})
            assert "wat" in msg, msg
            msg = await call_error(session, "submit_wasm", {"wat": "(module (func $broken"})
            assert "refused" in msg, msg
            msg = await call_error(session, "submit_docker", {"image": 5})
            assert "invalid arguments" in msg, msg
            msg = await call_error(session, "job_status", {"id": job_id})
            assert "job_id" in msg, msg
            msg = await call_error(session, "submit_docker", {"image": "busybox:latest", "max_price": -1})
            assert "max_price" in msg, msg
            msg = await call_error(session, "cancel_job", {"job_id": job_id})
            assert "already ended" in msg, msg
            msg = await call_error(session, "balance", {"node": "nobody"})
            assert "node id" in msg, msg
            # An llm job for a model nobody serves: refused by the node, which
            # names the model.
            msg = await call_error(
                session,
                "submit_llm",
                {"model": "no-such-model:1b", "prompt": "hi", "temperature": 0, "max_tokens": 8},
            )
            assert "refused" in msg and "no-such-model:1b" in msg, msg


async def no_node(binary, empty_dir):
    async with stdio_client(server(binary, empty_dir)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            msg = await call_error(session, "balance", {})
            assert "modchain" in msg and "start" in msg, msg


def main():
    binary, data_dir, peer_list, empty_dir, model, model_provider, image = sys.argv[1:8]
    # peer id → node id (hex)
    peers = dict(p.split("=", 1) for p in peer_list.split(","))
    asyncio.run(agent(binary, data_dir, peers, model, model_provider, image))
    asyncio.run(no_node(binary, empty_dir))
    log("all MCP checks passed")


if __name__ == "__main__":
    main()
