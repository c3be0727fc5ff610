//! Reading a Prometheus text exposition (what `GET /metrics` answers): samples with their
//! labels, sums over label subsets, and deltas between two scrapes.

use std::collections::BTreeMap;

use crate::util::http_client;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape, parsed.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// GETs `url`, asserts a 200 in the text format, and parses it.
    pub async fn get(url: &str) -> Scrape {
        let resp = http_client()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "GET {url}: {text}");
        assert!(
            content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
            "GET {url}: content type {content_type:?}"
        );
        Scrape::parse(&text)
    }

    /// Parses the text format (panics on a line it cannot read: the exporter wrote it).
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("unreadable sample line: {l:?}")))
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples named `name` that carry every label of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples named `name` that carry `labels` (0 when there is none: a
    /// counter never incremented is not rendered).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether a metric of this name (any labels) is there.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The metric's lines, for messages.
    pub fn lines_of(&self, name: &str) -> String {
        self.text
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `after - before` of [`Scrape::sum`].
pub fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            };
            labels.insert(key, value);
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_braces_quotes_and_escapes() {
        let s = Scrape::parse(
            "# HELP a_total help\n# TYPE a_total counter\n\
             a_total{route=\"/x/{id}\",q=\"a\\\"b\\\\c\"} 3\n\
             b 1.5\n\
             h_bucket{le=\"+Inf\"} 2\n",
        );
        assert_eq!(s.samples.len(), 3);
        assert_eq!(s.sum("a_total", &[("route", "/x/{id}")]), 3.0);
        assert_eq!(s.samples[0].labels["q"], "a\"b\\c");
        assert_eq!(s.sum("b", &[]), 1.5);
        assert_eq!(s.sum("h_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(s.sum("missing", &[]), 0.0);
    }
}
