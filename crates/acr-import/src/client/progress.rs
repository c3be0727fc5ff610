//! How an import's progress is shown: live `indicatif` bars on a terminal (standard error), or
//! plain lines without escape codes when standard error is not one (a pipe, a CI log) or
//! `TERM=dumb`. Progress goes to standard error; the outcome of each import (plain mode) and
//! the summary go to standard output.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use acr_core::wire::ImportProgress;
use indicatif::{
    BinaryBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};

/// Plain mode prints a progress line at most this often per import (and only on change).
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Where and how progress is drawn.
pub struct Display {
    bars: Option<MultiProgress>,
    /// Labels are padded to this width so that bars line up.
    width: usize,
}

impl Display {
    /// Bars when standard error is a terminal that can draw them, plain lines otherwise.
    pub fn detect(labels: &[&str]) -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let live = std::io::stderr().is_terminal() && !dumb;
        Self::new(live, labels)
    }

    pub fn new(live: bool, labels: &[&str]) -> Self {
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let bars = live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { bars, width }
    }

    /// Whether bars are drawn.
    pub fn is_live(&self) -> bool {
        self.bars.is_some()
    }

    /// A line on standard error (above the bars when they are drawn).
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                if m.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// The display of one import.
    pub fn track(&self, label: &str) -> Tracker {
        let view = match &self.bars {
            Some(m) => {
                let bar = m.add(ProgressBar::no_length());
                bar.set_style(waiting_style());
                bar.set_prefix(format!("{label:<w$}", w = self.width));
                bar.set_message("submitting");
                bar.enable_steady_tick(Duration::from_millis(120));
                View::Bar { bar, sized: false }
            }
            None => View::Plain {
                last_line: None,
                last_bytes: None,
            },
        };
        Tracker {
            label: label.to_owned(),
            view,
            started: Instant::now(),
        }
    }
}

/// One import's bar or lines.
pub struct Tracker {
    label: String,
    view: View,
    started: Instant,
}

enum View {
    Bar {
        bar: ProgressBar,
        /// The byte bar is shown (the totals are known).
        sized: bool,
    },
    Plain {
        /// When the last progress line was printed, and what it said.
        last_line: Option<(Instant, String)>,
        /// Bytes done at the last line, for the rate.
        last_bytes: Option<(Instant, u64)>,
    },
}

impl Tracker {
    /// Accepted by the service: the operation's name.
    pub fn accepted(&mut self, operation: &str) {
        match &mut self.view {
            View::Bar { bar, .. } => bar.set_message(format!("accepted as {operation}")),
            View::Plain { .. } => eprintln!("{}: accepted as {operation}", self.label),
        }
    }

    /// A status answer of a running operation.
    pub fn update(&mut self, status: &str, progress: Option<&ImportProgress>) {
        let known = progress.filter(|p| p.manifests_total > 0 || p.bytes_total > 0);
        match &mut self.view {
            View::Bar { bar, sized } => match known {
                Some(p) => {
                    bar.set_message(counts(p));
                    bar.set_length(p.bytes_total);
                    bar.set_position(done_bytes(p).min(p.bytes_total));
                    if !*sized {
                        bar.set_style(bar_style());
                        *sized = true;
                    }
                }
                None => bar.set_message(waiting_text(status)),
            },
            View::Plain {
                last_line,
                last_bytes,
            } => {
                let now = Instant::now();
                let mut text = match known {
                    Some(p) => format!(
                        "{status}: {}, {} of {} ({:.0} %)",
                        counts(p),
                        BinaryBytes(done_bytes(p)),
                        BinaryBytes(p.bytes_total),
                        percent(p)
                    ),
                    None => waiting_text(status),
                };
                let due = match last_line {
                    None => true,
                    Some((at, said)) => *said != text && now.duration_since(*at) >= PLAIN_EVERY,
                };
                if !due {
                    return;
                }
                *last_line = Some((now, text.clone()));
                if let Some(p) = known {
                    let done = done_bytes(p);
                    if let Some((at, before)) = *last_bytes {
                        let secs = now.duration_since(at).as_secs_f64();
                        if secs > 0.0 && done >= before {
                            let rate = ((done - before) as f64 / secs) as u64;
                            text.push_str(&format!(", {}/s", BinaryBytes(rate)));
                        }
                    }
                    *last_bytes = Some((now, done));
                }
                eprintln!("{}: {text}", self.label);
            }
        }
    }

    /// The operation succeeded: the bar ends at 100 %, or the outcome line is printed.
    pub fn succeeded(&mut self, progress: Option<&ImportProgress>) {
        match &mut self.view {
            View::Bar { bar, .. } => {
                let total = progress.map_or(0, |p| p.bytes_total).max(1);
                bar.set_length(total);
                bar.set_position(total);
                bar.set_style(done_style());
                let what = progress
                    .map(counts)
                    .unwrap_or_else(|| "nothing to copy".into());
                bar.finish_with_message(format!("Succeeded: {what}"));
            }
            View::Plain { .. } => {
                let took = HumanDuration(self.started.elapsed());
                let what = match progress {
                    Some(p) => format!(
                        "{}, {} ({} copied, {} already in the target)",
                        counts(p),
                        BinaryBytes(p.bytes_total),
                        BinaryBytes(p.bytes_copied),
                        BinaryBytes(p.bytes_skipped)
                    ),
                    None => "nothing to copy".into(),
                };
                println!("{}: Succeeded: {what} in {took}", self.label);
            }
        }
    }

    /// The operation failed (or could not be followed): `why` is `Code: message`.
    pub fn failed(&mut self, outcome: &str, why: &str) {
        match &mut self.view {
            View::Bar { bar, .. } => {
                bar.set_style(failed_style());
                bar.abandon_with_message(format!("{outcome}: {why}"));
            }
            View::Plain { .. } => println!("{}: {outcome}: {why}", self.label),
        }
    }
}

/// Bytes the target has: copied, or already there.
fn done_bytes(p: &ImportProgress) -> u64 {
    p.bytes_copied.saturating_add(p.bytes_skipped)
}

fn percent(p: &ImportProgress) -> f64 {
    if p.bytes_total == 0 {
        return 0.0;
    }
    (done_bytes(p).min(p.bytes_total) as f64 * 100.0) / p.bytes_total as f64
}

/// `1/2 manifests, 3/6 blobs`.
fn counts(p: &ImportProgress) -> String {
    format!(
        "{}/{} manifests, {}/{} blobs",
        p.manifests_done, p.manifests_total, p.blobs_done, p.blobs_total
    )
}

/// Before the source is resolved.
fn waiting_text(status: &str) -> String {
    match status.to_ascii_lowercase().as_str() {
        "accepted" | "queued" => "queued".into(),
        _ => format!("{status}: reading the source"),
    }
}

/// Before the totals are known.
const WAITING_TEMPLATE: &str = "{prefix:.bold} {spinner} {wide_msg}";
/// Bytes, rate, manifests and blobs (the message is cut first on a narrow terminal).
const BAR_TEMPLATE: &str = "{prefix:.bold} [{bar:20.cyan/blue}] {percent:>3}% \
    {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {wide_msg}";
/// A succeeded import: the total and the outcome (fits 80 columns).
const DONE_TEMPLATE: &str =
    "{prefix:.bold.green} [{bar:20.cyan/blue}] {percent:>3}% {binary_total_bytes} {wide_msg}";
/// A failed import: its error.
const FAILED_TEMPLATE: &str = "{prefix:.bold.red} {wide_msg}";

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template(WAITING_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template(DONE_TEMPLATE)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn failed_style() -> ProgressStyle {
    ProgressStyle::with_template(FAILED_TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(done: u64) -> ImportProgress {
        ImportProgress {
            manifests_total: 2,
            manifests_done: 1,
            blobs_total: 6,
            blobs_done: 3,
            bytes_total: 4 * 1024 * 1024,
            bytes_copied: done,
            bytes_skipped: 0,
            source_digest: None,
        }
    }

    #[test]
    fn plain_texts() {
        assert_eq!(counts(&p(0)), "1/2 manifests, 3/6 blobs");
        assert!((percent(&p(1024 * 1024)) - 25.0).abs() < 1e-9);
        assert_eq!(waiting_text("Accepted"), "queued");
        assert_eq!(waiting_text("InProgress"), "InProgress: reading the source");
    }

    #[test]
    fn the_templates_parse() {
        // A typo would silently fall back to the default style.
        for t in [
            WAITING_TEMPLATE,
            BAR_TEMPLATE,
            DONE_TEMPLATE,
            FAILED_TEMPLATE,
        ] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn a_bar_ends_at_100_percent() {
        // 80 columns: the final frame still says it all.
        let term = indicatif::InMemoryTerm::new(4, 80);
        let m =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let d = Display {
            bars: Some(m),
            width: 6,
        };
        let mut t = d.track("app:v1");
        t.update("InProgress", Some(&p(1024 * 1024)));
        let mut done = p(4 * 1024 * 1024);
        done.manifests_done = 2;
        done.blobs_done = 6;
        t.succeeded(Some(&done));
        let screen = term.contents();
        assert!(screen.contains("100%"), "{screen}");
        assert!(
            screen.contains("100% 4.00 MiB Succeeded: 2/2 manifests, 6/6 blobs"),
            "{screen}"
        );
    }
}
