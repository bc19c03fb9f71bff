//! What devnet shows while the network comes up and the demo job runs: one
//! line per phase, numbered, with its time. On a terminal the phase under
//! way is a live bar or spinner that its final line replaces; written to a
//! file or a pipe (CI logs, tests) only the final lines appear, so the whole
//! run fits one screen either way.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Detail lines sit under the phase's label.
const DETAIL_INDENT: &str = "          ";

/// The numbered phases of one devnet run.
#[derive(Debug)]
pub(super) struct Display {
    live: bool,
    phases: usize,
}

impl Display {
    /// `phases` is how many [`Display::phase`] calls will come; live bars
    /// only when stdout is a terminal.
    pub(super) fn new(phases: usize) -> Self {
        Display {
            live: std::io::stdout().is_terminal(),
            phases,
        }
    }

    /// Starts phase `n` named `label`: a bar of `len` steps, or a spinner.
    pub(super) fn phase(&self, n: usize, label: &str, len: Option<u64>) -> Phase {
        let prefix = format!("[{n}/{}] {label:<9}", self.phases);
        let bar = self.live.then(|| {
            let bar = match len {
                Some(len) => {
                    let bar =
                        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} {bar:24.cyan/blue} {pos}/{len} {msg} {elapsed:.dim}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("█▌ "),
                    );
                    bar
                }
                None => {
                    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} {spinner:.cyan} {msg} {elapsed:.dim}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar
                }
            };
            bar.set_prefix(prefix.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Phase {
            bar,
            prefix,
            started: Instant::now(),
        }
    }

    /// A detail line under the phase that just ended.
    pub(super) fn detail(&self, text: impl AsRef<str>) {
        println!("{DETAIL_INDENT}{}", text.as_ref());
    }

    /// A line outside any phase (the greeting, the closing commands).
    pub(super) fn line(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }
}

/// One phase under way.
#[derive(Debug)]
pub(super) struct Phase {
    bar: Option<ProgressBar>,
    prefix: String,
    started: Instant,
}

impl Phase {
    /// Moves the bar to `pos` with `msg` beside it (nothing when not live).
    pub(super) fn progress(&self, pos: u64, msg: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(msg.into());
        }
    }

    /// Shows `msg` beside the spinner (nothing when not live).
    pub(super) fn status(&self, msg: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.into());
        }
    }

    /// Ends the phase: its one final line, `summary` and its duration.
    pub(super) fn done(self, summary: impl AsRef<str>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!(
            "{} {} ({:.1} s)",
            self.prefix,
            summary.as_ref(),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A detail line under the phase, printed above a live bar.
    pub(super) fn detail(&self, text: impl AsRef<str>) {
        let line = format!("{DETAIL_INDENT}{}", text.as_ref());
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }
}

impl Drop for Phase {
    /// A phase abandoned on an error leaves no half-drawn bar behind.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}
