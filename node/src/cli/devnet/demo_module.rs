//! The demo job devnet submits: a small WASI module, written out as
//! WebAssembly text, that prints a greeting and writes one output file.

/// The greeting the demo module prints.
const DEMO_GREETING: &str =
    "Hello from Modchain! This WebAssembly module ran on a provider chosen by auction.\n";
/// The file the demo module writes to `/outputs`.
const DEMO_OUTPUT_NAME: &str = "greeting.txt";
const DEMO_OUTPUT_TEXT: &str =
    "This file was written by the devnet demo job and fetched back by its client.\n";

/// The demo module in WebAssembly text: prints the greeting on stdout and
/// writes `greeting.txt` into the preopened `/outputs` (fd 3).
pub fn demo_wat() -> String {
    format!(
        r#";; The modchain devnet demo: WASI preview 1, no imports beyond fd_write,
;; path_open and fd_close. Submit it yourself with
;;   modchain --data-dir DIR/node-1 submit wasm demo.wat --wait
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{greeting}")
  (data (i32.const 2048) "{name}")
  (data (i32.const 3072) "{text}")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (call $write (i32.const 1) (i32.const 1024) (i32.const {greeting_len}))
    ;; path_open(dirfd 3 = /outputs, flags 0, path, len, O_CREAT, rights, rights, 0, &fd)
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 2048) (i32.const {name_len})
                   (i32.const 1) (i64.const 536870911) (i64.const 536870911) (i32.const 0) (i32.const 64)))
      (then
        (call $write (i32.load (i32.const 64)) (i32.const 3072) (i32.const {text_len}))
        (drop (call $fd_close (i32.load (i32.const 64))))))))
"#,
        greeting = wat_escape(DEMO_GREETING),
        greeting_len = DEMO_GREETING.len(),
        name = wat_escape(DEMO_OUTPUT_NAME),
        name_len = DEMO_OUTPUT_NAME.len(),
        text = wat_escape(DEMO_OUTPUT_TEXT),
        text_len = DEMO_OUTPUT_TEXT.len(),
    )
}

fn wat_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b:02x}"),
        })
        .collect()
}
