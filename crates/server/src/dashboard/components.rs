//! Building blocks of dashboard pages, shared by the queue pages and the coming
//! notification, payment and storage pages: a filtered table with cursor pages and an
//! optional selection, a detail pane, a chart, confirmable actions (with the server-rendered
//! confirm step), live values, a JSON viewer, empty states and form fields with their
//! validation messages.
//!
//! Each returns HTML text with every dynamic value escaped; arguments named `*_html` are
//! markup the caller built (and escaped) already. `dashboard.js` adds behaviour on top
//! (dialogs, polling, select-all); everything works without it.

use super::page::{esc, num};
use crate::error::FieldError;
use axum::response::{IntoResponse, Json, Response};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A link with its query string built from `params` (empty values left out).
pub fn href(path: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

/// One field of a [`Filters`] bar.
pub enum Filter<'a> {
    /// A text box.
    Text {
        /// Query parameter.
        name: &'a str,
        /// Shown before it.
        label: &'a str,
        /// Current value.
        value: &'a str,
        /// Hint inside it.
        placeholder: &'a str,
    },
    /// A drop-down; the first option is "any".
    Choice {
        /// Query parameter.
        name: &'a str,
        /// Shown before it.
        label: &'a str,
        /// `(value, label)` pairs.
        options: Vec<(String, String)>,
        /// Current value.
        selected: &'a str,
    },
    /// Carried along unchanged.
    Hidden {
        /// Query parameter.
        name: &'a str,
        /// Value.
        value: &'a str,
    },
}

/// A GET form above a table; `problem` explains a filter that could not be applied.
pub struct Filters<'a> {
    /// Where the form goes (the page itself).
    pub action: &'a str,
    /// Its fields.
    pub fields: Vec<Filter<'a>>,
    /// A friendly message about a bad filter.
    pub problem: Option<String>,
}

impl Filters<'_> {
    /// The form, and the message if any.
    pub fn render(&self) -> String {
        let mut out = format!(
            "<form class=\"filters\" method=\"get\" action=\"{}\" role=\"search\">",
            esc(self.action)
        );
        for f in &self.fields {
            match f {
                Filter::Text {
                    name,
                    label,
                    value,
                    placeholder,
                } => {
                    let _ = write!(
                        out,
                        "<label>{} <input name=\"{}\" value=\"{}\" placeholder=\"{}\"></label>",
                        esc(label),
                        esc(name),
                        esc(value),
                        esc(placeholder)
                    );
                }
                Filter::Choice {
                    name,
                    label,
                    options,
                    selected,
                } => {
                    let _ = write!(out, "<label>{} <select name=\"{}\">", esc(label), esc(name));
                    for (v, l) in options {
                        let sel = if v == selected { " selected" } else { "" };
                        let _ =
                            write!(out, "<option value=\"{}\"{sel}>{}</option>", esc(v), esc(l));
                    }
                    out.push_str("</select></label>");
                }
                Filter::Hidden { name, value } => {
                    let _ = write!(
                        out,
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                        esc(name),
                        esc(value)
                    );
                }
            }
        }
        out.push_str("<button type=\"submit\">Search</button></form>");
        if let Some(p) = &self.problem {
            let _ = write!(
                out,
                "<p class=\"notice\" role=\"alert\" id=\"filter-problem\">{}</p>",
                esc(p)
            );
        }
        out
    }
}

/// A row of a [`Table`].
#[derive(Default)]
pub struct Row {
    /// Attributes of the `<tr>`, e.g. `("data-id", id)`.
    pub attrs: Vec<(&'static str, String)>,
    /// Cell markup.
    pub cells_html: Vec<String>,
    /// The value a selection checkbox submits for this row.
    pub select: Option<String>,
}

/// A submit button of a form, optionally asking for confirmation first.
pub struct Button<'a> {
    /// Form field name of the button (`action`).
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
    /// Label.
    pub label: &'a str,
    /// Asked before submitting (by the dialog, or by the server's confirm step).
    pub confirm: Option<String>,
    /// Styled as dangerous.
    pub danger: bool,
}

impl Button<'_> {
    /// The `<button>`.
    pub fn render(&self) -> String {
        let confirm = self
            .confirm
            .as_deref()
            .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
            .unwrap_or_default();
        format!(
            "<button type=\"submit\" name=\"{}\" value=\"{}\"{}{confirm}>{}</button>",
            esc(self.name),
            esc(self.value),
            if self.danger { " class=\"danger\"" } else { "" },
            esc(self.label)
        )
    }
}

/// Rows that can be ticked and acted on together.
pub struct Selection<'a> {
    /// Where the form posts.
    pub action: String,
    /// Field name of each ticked row's value.
    pub name: &'a str,
    /// The bulk actions.
    pub buttons: Vec<Button<'a>>,
    /// Fields sent along (e.g. where to come back to).
    pub hidden: Vec<(&'a str, String)>,
}

/// A table with an empty state, cursor pages and an optional selection.
pub struct Table<'a> {
    /// Element id.
    pub id: &'a str,
    /// Column headings.
    pub columns: &'a [&'a str],
    /// Rows.
    pub rows: Vec<Row>,
    /// Shown instead of the table when there are no rows.
    pub empty_html: String,
    /// Link to the next page (older entries).
    pub next: Option<String>,
    /// Link back to the first page, when this is a later one.
    pub first: Option<String>,
    /// Tick boxes and bulk actions.
    pub selection: Option<Selection<'a>>,
}

impl Table<'_> {
    /// The table (inside its selection form, if any) and its page links.
    pub fn render(&self) -> String {
        let mut pages = String::new();
        if let Some(first) = &self.first {
            let _ = write!(
                pages,
                "<a id=\"first-page\" href=\"{}\">← Newest</a>",
                esc(first)
            );
        }
        if let Some(next) = &self.next {
            let _ = write!(
                pages,
                "<a id=\"next-page\" href=\"{}\">Older →</a>",
                esc(next)
            );
        }
        let pages = if pages.is_empty() {
            pages
        } else {
            format!("<p class=\"pages\">{pages}</p>")
        };
        if self.rows.is_empty() {
            return format!(
                "<div class=\"empty\" id=\"{}-empty\">{}</div>{pages}",
                esc(self.id),
                self.empty_html
            );
        }
        let sel = self.selection.as_ref();
        let mut out = String::new();
        if let Some(s) = sel {
            let _ = write!(
                out,
                "<form class=\"selection\" method=\"post\" action=\"{}\" data-selection>",
                esc(&s.action)
            );
            for (k, v) in &s.hidden {
                let _ = write!(
                    out,
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    esc(k),
                    esc(v)
                );
            }
            out.push_str("<div class=\"toolbar\"><span data-selected-count>0 selected</span> ");
            for b in &s.buttons {
                out.push_str(&b.render());
                out.push(' ');
            }
            out.push_str("</div>");
        }
        let _ = write!(out, "<table id=\"{}\"><thead><tr>", esc(self.id));
        if sel.is_some() {
            out.push_str(
                "<th class=\"pick\"><input type=\"checkbox\" data-select-all aria-label=\"Select all rows\"></th>",
            );
        }
        for c in self.columns {
            let _ = write!(out, "<th>{}</th>", esc(c));
        }
        out.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            out.push_str("<tr");
            for (k, v) in &r.attrs {
                let _ = write!(out, " {k}=\"{}\"", esc(v));
            }
            out.push('>');
            if let Some(s) = sel {
                match &r.select {
                    Some(v) => {
                        let _ = write!(
                            out,
                            "<td class=\"pick\"><input type=\"checkbox\" name=\"{}\" value=\"{}\" aria-label=\"Select {}\"></td>",
                            esc(s.name),
                            esc(v),
                            esc(v)
                        );
                    }
                    None => out.push_str("<td class=\"pick\"></td>"),
                }
            }
            for c in &r.cells_html {
                let _ = write!(out, "<td>{c}</td>");
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        if sel.is_some() {
            out.push_str("</form>");
        }
        out.push_str(&pages);
        out
    }
}

/// A filter bar over a table: the component list pages are made of.
pub fn filtered_table(filters: &Filters<'_>, table: &Table<'_>) -> String {
    format!(
        "<section class=\"filtered\">{}{}</section>",
        filters.render(),
        table.render()
    )
}

/// A detail pane: labelled values (`value_html` is markup).
pub fn detail(id: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!("<dl class=\"detail\" id=\"{}\">", esc(id));
    for (label, value_html) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{value_html}</dd>", esc(label));
    }
    out.push_str("</dl>");
    out
}

/// One series of a [`Chart`].
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// CSS class of its bars (colours live in the style sheet).
    pub class: &'a str,
}

/// A stacked bar chart rendered as inline SVG (no script, so the CSP stays strict).
pub struct Chart<'a> {
    /// Element id.
    pub id: &'a str,
    /// What it shows (accessible name and caption).
    pub title: &'a str,
    /// Series, bottom of the stack first.
    pub series: Vec<Series<'a>>,
    /// `(label, one value per series)`, left to right.
    pub points: Vec<(String, Vec<i64>)>,
    /// Size in CSS pixels.
    pub width: u32,
    /// Height in CSS pixels.
    pub height: u32,
}

impl Chart<'_> {
    /// The `<figure>` with the SVG, its legend and per-bar tooltips.
    pub fn render(&self) -> String {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let top = self
            .points
            .iter()
            .map(|(_, v)| v.iter().sum::<i64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let n = self.points.len().max(1) as f64;
        let slot = w / n;
        let bar = (slot - 1.0).max(1.0);
        let mut bars = String::new();
        for (i, (label, values)) in self.points.iter().enumerate() {
            let x = i as f64 * slot;
            let mut tip = esc(label);
            let mut y = h;
            let mut rects = String::new();
            for (s, v) in self.series.iter().zip(values) {
                let _ = write!(tip, " · {} {}", esc(s.name), num(*v));
                if *v <= 0 {
                    continue;
                }
                let bh = (*v as f64 / top as f64 * (h - 2.0)).max(1.0);
                y -= bh;
                let _ = write!(
                    rects,
                    "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\"/>",
                    esc(s.class)
                );
            }
            // A full-height transparent rect carries the tooltip of the whole minute.
            let _ = write!(
                bars,
                "<g><title>{tip}</title><rect class=\"hit\" x=\"{x:.1}\" y=\"0\" width=\"{slot:.1}\" height=\"{h:.1}\"/>{rects}</g>"
            );
        }
        let totals: Vec<i64> = (0..self.series.len())
            .map(|i| {
                self.points
                    .iter()
                    .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                    .sum()
            })
            .collect();
        let legend: String = self
            .series
            .iter()
            .zip(&totals)
            .map(|(s, t)| {
                format!(
                    "<span class=\"key {}\">{} <strong>{}</strong></span>",
                    esc(s.class),
                    esc(s.name),
                    num(*t)
                )
            })
            .collect();
        format!(
            "<figure class=\"chart\" id=\"{id}\"><svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
             role=\"img\" aria-label=\"{title}\" preserveAspectRatio=\"none\">\
             <line class=\"axis\" x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\"/>{bars}</svg>\
             <div class=\"axis-labels\"><span>{from}</span><span>{to}</span></div>\
             <figcaption>{title}: {legend} <span class=\"peak\">highest bar {peak}</span></figcaption></figure>",
            from = self.points.first().map(|p| esc(&p.0)).unwrap_or_default(),
            to = self.points.last().map(|p| esc(&p.0)).unwrap_or_default(),
            id = esc(self.id),
            title = esc(self.title),
            peak = num(top),
        )
    }
}

/// A form with one button that posts `hidden` to `url`; with `confirm`, the person is asked
/// first (by the dialog, or by the server's confirm step without JavaScript).
pub struct Action<'a> {
    /// Where it posts.
    pub url: String,
    /// Button label.
    pub label: &'a str,
    /// Button element id.
    pub id: Option<&'a str>,
    /// The question asked before a destructive action.
    pub confirm: Option<String>,
    /// Fields posted along.
    pub hidden: Vec<(&'a str, String)>,
    /// Styled as dangerous.
    pub danger: bool,
}

impl Action<'_> {
    /// The inline form.
    pub fn render(&self) -> String {
        let mut out = format!(
            "<form class=\"inline\" method=\"post\" action=\"{}\">",
            esc(&self.url)
        );
        for (k, v) in &self.hidden {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            );
        }
        let id = self
            .id
            .map(|i| format!(" id=\"{}\"", esc(i)))
            .unwrap_or_default();
        let confirm = self
            .confirm
            .as_deref()
            .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
            .unwrap_or_default();
        let class = if self.danger { " class=\"danger\"" } else { "" };
        let _ = write!(
            out,
            "<button type=\"submit\"{id}{class}{confirm}>{}</button></form>",
            esc(self.label)
        );
        out
    }
}

/// The server-rendered confirm step: the question, and a form that posts the same fields
/// again with `confirmed=1`. A destructive handler answers with it when `confirmed` is
/// missing, so nothing is lost without JavaScript.
pub fn confirm_step(
    question: &str,
    url: &str,
    fields: &[(String, String)],
    label: &str,
    back: &str,
) -> String {
    let mut out = format!(
        "<div class=\"card confirm\" role=\"alertdialog\" aria-labelledby=\"confirm-question\">\
         <p id=\"confirm-question\"><strong>{}</strong></p><form method=\"post\" action=\"{}\">",
        esc(question),
        esc(url)
    );
    for (k, v) in fields.iter().filter(|(k, _)| k != "confirmed") {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"confirmed\" value=\"1\">\
         <button type=\"submit\" class=\"danger\" id=\"confirm-yes\">{}</button> \
         <a href=\"{}\" id=\"confirm-no\">Cancel</a></form></div>",
        esc(label),
        esc(back)
    );
    out
}

/// A value `dashboard.js` keeps current from the page's live endpoint.
pub fn live(key: &str, value_html: &str) -> String {
    format!(
        "<span class=\"live\" data-live=\"{}\">{value_html}</span>",
        esc(key)
    )
}

/// The answer of a live endpoint: the current text of each live value by key.
#[derive(Default)]
pub struct LiveValues(BTreeMap<String, String>);

impl LiveValues {
    /// Sets one value (plain text).
    pub fn set(&mut self, key: String, value: impl Into<String>) {
        self.0.insert(key, value.into());
    }
}

impl IntoResponse for LiveValues {
    fn into_response(self) -> Response {
        let mut resp = Json(serde_json::json!({ "values": self.0 })).into_response();
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        resp
    }
}

/// JSON shown as a collapsible tree (objects and arrays are `<details>`, the first levels
/// open), with the pretty-printed text one click away for copying.
pub fn json_view(id: &str, v: &serde_json::Value) -> String {
    let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
    format!(
        "<div class=\"json\" id=\"{}\">{}<details class=\"raw\"><summary>Raw JSON</summary><pre>{}</pre></details></div>",
        esc(id),
        json_node(v, 0),
        esc(&pretty)
    )
}

fn json_node(v: &serde_json::Value, depth: usize) -> String {
    use serde_json::Value;
    let open = if depth < 2 { " open" } else { "" };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut out = format!(
                "<details{open}><summary>{{ {} }}</summary><ul>",
                match m.len() {
                    1 => "1 key".to_owned(),
                    n => format!("{n} keys"),
                }
            );
            for (k, v) in m {
                let _ = write!(
                    out,
                    "<li><span class=\"k\">{}</span>: {}</li>",
                    esc(&serde_json::to_string(k).unwrap_or_default()),
                    json_node(v, depth + 1)
                );
            }
            out.push_str("</ul></details>");
            out
        }
        Value::Array(a) if !a.is_empty() => {
            let mut out = format!(
                "<details{open}><summary>[ {} ]</summary><ol start=\"0\">",
                match a.len() {
                    1 => "1 item".to_owned(),
                    n => format!("{n} items"),
                }
            );
            for v in a {
                let _ = write!(out, "<li>{}</li>", json_node(v, depth + 1));
            }
            out.push_str("</ol></details>");
            out
        }
        Value::String(s) => format!(
            "<span class=\"s\">{}</span>",
            esc(&serde_json::to_string(s).unwrap_or_default())
        ),
        other => format!("<span class=\"n\">{}</span>", esc(&other.to_string())),
    }
}

/// What a list shows when it has nothing: a title and what to do about it.
pub fn empty_state(title: &str, body_html: &str) -> String {
    format!("<p><strong>{}</strong></p>{body_html}", esc(title))
}

/// A labelled form input with its hint and validation message.
pub struct Field<'a> {
    /// Form field name.
    pub name: &'a str,
    /// Label.
    pub label: &'a str,
    /// Current value.
    pub value: String,
    /// `text`, `number`…
    pub kind: &'a str,
    /// Help under it.
    pub hint: &'a str,
    /// Validation message.
    pub error: Option<String>,
}

impl Field<'_> {
    /// `<label>` with the input, its hint and its message.
    pub fn render(&self) -> String {
        let id = format!("f-{}", self.name);
        let (invalid, error) = match &self.error {
            Some(e) => (
                format!(" aria-invalid=\"true\" aria-describedby=\"{id}-error\""),
                format!(
                    "<span class=\"field-error\" id=\"{id}-error\">{}</span>",
                    esc(e)
                ),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "<div class=\"field{}\"><label for=\"{id}\">{}</label>\
             <input id=\"{id}\" name=\"{}\" type=\"{}\" value=\"{}\"{invalid}>\
             <small>{}</small>{error}</div>",
            if self.error.is_some() { " invalid" } else { "" },
            esc(self.label),
            esc(self.name),
            esc(self.kind),
            esc(&self.value),
            esc(self.hint)
        )
    }
}

/// Validation messages by field name.
pub fn messages(errors: &[FieldError]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for e in errors {
        out.entry(e.field.clone())
            .and_modify(|m| {
                m.push_str("; ");
                m.push_str(&e.message);
            })
            .or_insert_with(|| e.message.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_view_escapes_and_nests() {
        let v = serde_json::json!({"to": "<b>a@example.com</b>", "n": [1, {"x": null}]});
        let html = json_view("payload", &v);
        assert!(html.contains("<span class=\"k\">&quot;to&quot;</span>: <span class=\"s\">&quot;&lt;b&gt;a@example.com&lt;/b&gt;&quot;</span>"), "{html}");
        assert!(
            html.contains("[ 2 items ]") && html.contains("{ 1 key }"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn chart_scales_to_the_peak_and_totals_series() {
        let c = Chart {
            id: "c",
            title: "Last hour",
            series: vec![
                Series {
                    name: "completed",
                    class: "ok",
                },
                Series {
                    name: "failed",
                    class: "bad",
                },
            ],
            points: vec![("10:00".into(), vec![3, 1]), ("10:01".into(), vec![0, 0])],
            width: 100,
            height: 42,
        };
        let svg = c.render();
        // The peak bar (4) fills the height less a 2 px margin: 30 + 10.
        assert!(
            svg.contains("height=\"30.0\"") && svg.contains("height=\"10.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("completed <strong>3</strong>")
                && svg.contains("failed <strong>1</strong>")
        );
        assert!(svg.contains("<title>10:01 · completed 0 · failed 0</title>"));
    }

    #[test]
    fn href_leaves_out_empty_values_and_encodes() {
        assert_eq!(
            href(
                "/dashboard/jobs",
                &[("queue", "a b"), ("state", ""), ("tag", "x&y")]
            ),
            "/dashboard/jobs?queue=a+b&tag=x%26y"
        );
        assert_eq!(href("/p", &[("a", "")]), "/p");
    }
}
