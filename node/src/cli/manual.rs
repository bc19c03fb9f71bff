//! Shell completions and man pages for `modchain` and `modchain-bootstrap`,
//! rendered from their clap definitions (`modchain completions`, `modchain
//! man`; both hidden). The Debian package runs the binary it ships to make
//! them (scripts/build-deb.sh), so what `man modchain-start` says is what
//! `modchain start` parses: there is no second copy to drift.

use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Which of the two binaries a completion script is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Program {
    Modchain,
    ModchainBootstrap,
}

impl Program {
    fn command(self) -> clap::Command {
        match self {
            Program::Modchain => super::Cli::command(),
            Program::ModchainBootstrap => modchain_bootstrap::cli::Cli::command(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ManualError {
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Writes `program`'s completion script for `shell` to `out`.
pub fn completions(
    program: Program,
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> Result<(), ManualError> {
    let mut cmd = program.command();
    let name = cmd.get_name().to_string();
    // clap_complete writes straight to `out` and has no error to return;
    // a closed stdout is caught by the flush below.
    clap_complete::generate(shell, &mut cmd, name, out);
    out.flush().map_err(|cause| ManualError::Write {
        path: PathBuf::from("<stdout>"),
        cause,
    })
}

/// Writes the man pages into `dir` (created if needed): `modchain.1`, one
/// `modchain-<subcommand>.1` per visible subcommand, and
/// `modchain-bootstrap.1`. Returns the files written.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let write_err = |cause| ManualError::Write {
        path: dir.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    for program in [Program::Modchain, Program::ModchainBootstrap] {
        clap_mangen::generate_to(program.command(), dir).map_err(write_err)?;
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(write_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_a_man_page_and_hidden_ones_do_not() {
        let dir = std::env::temp_dir().join(format!("modchain-man-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pages = man_pages(&dir).expect("man pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        for want in [
            "modchain.1",
            "modchain-start.1",
            "modchain-submit-wasm.1",
            "modchain-bootstrap.1",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        for hidden in [
            "modchain-man.1",
            "modchain-completions.1",
            "modchain-bootstrap-peer.1",
        ] {
            assert!(
                !names.iter().any(|n| n == hidden),
                "{hidden} should not be written"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn completions_name_the_binary_they_complete() {
        let mut out = Vec::new();
        completions(
            Program::ModchainBootstrap,
            clap_complete::Shell::Bash,
            &mut out,
        )
        .expect("completions");
        let script = String::from_utf8(out).expect("utf-8");
        assert!(script.contains("-o default modchain-bootstrap"), "{script}");
        assert!(script.contains("--max-connections"));
    }
}
