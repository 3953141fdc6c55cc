//! Templates: Handlebars, checked when saved, rendered per delivery.
//!
//! HTML parts (an e-mail's HTML body, a layout) escape values by default, as Handlebars does
//! (`{{name}}` escapes, `{{{html}}}` does not). Plain-text parts (subjects, SMS, push, chat
//! messages) are not HTML and are never escaped: an SMS must say `Tom & Jerry`, not
//! `Tom &amp; Jerry`. Rendering is strict: a variable the data does not have is an error
//! naming it (the delivery fails with that message) rather than an empty string in a message
//! a customer reads; `{{#if x}}` and `{{#each xs}}` still test for presence.

use handlebars::Handlebars;
use serde_json::Value;

/// How a part's values are escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// HTML (`<`, `>`, `&`, quotes): e-mail HTML bodies and layouts.
    Html,
    /// None: subjects, SMS, push, in-app, chat texts.
    Text,
}

/// A template that does not compile, or a render that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong, with line and column when known.
    pub message: String,
}

/// Checks and renders templates (cheap to share: build one per process).
pub struct Renderer {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl Renderer {
    /// A renderer in strict mode with Handlebars' built-in helpers.
    pub fn new() -> Renderer {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        Renderer { html, text }
    }

    /// Checks that `source` compiles (at save time: a broken template is a 422 then, not a
    /// failed delivery later).
    pub fn check(&self, source: &str) -> Result<(), TemplateError> {
        handlebars::Template::compile(source)
            .map(|_| ())
            .map_err(|e| TemplateError {
                message: describe_compile(&e),
            })
    }

    /// Renders `source` with `data`.
    pub fn render(
        &self,
        source: &str,
        escape: Escape,
        data: &Value,
    ) -> Result<String, TemplateError> {
        let registry = match escape {
            Escape::Html => &self.html,
            Escape::Text => &self.text,
        };
        registry
            .render_template(source, data)
            .map_err(|e| TemplateError {
                message: describe_render(&e),
            })
    }
}

fn describe_compile(e: &handlebars::TemplateError) -> String {
    let reason = e.reason().to_string();
    match e.pos() {
        Some((line, column)) => format!("line {line}, column {column}: {reason}"),
        None => reason,
    }
}

fn describe_render(e: &handlebars::RenderError) -> String {
    let reason = match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("the data has no `{path}`")
        }
        other => other.to_string(),
    };
    match (e.line_no, e.column_no) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {reason}"),
        _ => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_parts_escape_and_text_parts_do_not() {
        let r = Renderer::new();
        let data = json!({"name": "Tom & <Jerry>"});
        assert_eq!(
            r.render("Hi {{name}}", Escape::Html, &data).unwrap(),
            "Hi Tom &amp; &lt;Jerry&gt;"
        );
        assert_eq!(
            r.render("Hi {{{name}}}", Escape::Html, &data).unwrap(),
            "Hi Tom & <Jerry>"
        );
        assert_eq!(
            r.render("Hi {{name}}", Escape::Text, &data).unwrap(),
            "Hi Tom & <Jerry>"
        );
    }

    #[test]
    fn a_broken_template_is_refused_with_its_position() {
        let r = Renderer::new();
        assert!(r.check("Hello {{name}}, {{#if paid}}thanks{{/if}}").is_ok());
        let e = r.check("Hello\n{{#if paid}}thanks").unwrap_err();
        assert!(e.message.contains("line"), "{}", e.message);
        assert!(r.check("{{name").is_err());
    }

    #[test]
    fn a_missing_variable_names_itself_but_conditionals_test_presence() {
        let r = Renderer::new();
        let e = r
            .render(
                "Order {{order.id}} for {{name}}",
                Escape::Text,
                &json!({"name": "A"}),
            )
            .unwrap_err();
        assert!(e.message.contains("order.id"), "{}", e.message);
        let out = r
            .render(
                "{{#if coupon}}Code {{coupon}}{{else}}No code{{/if}}",
                Escape::Text,
                &json!({}),
            )
            .unwrap();
        assert_eq!(out, "No code");
        let out = r
            .render(
                "{{#each items}}{{this.name}} x{{this.qty}}; {{/each}}",
                Escape::Text,
                &json!({"items": [{"name": "Tea", "qty": 2}]}),
            )
            .unwrap();
        assert_eq!(out, "Tea x2; ");
    }

    #[test]
    fn the_five_backends_templates_paste_in_unchanged() {
        // Shapes used by the source backends' Nodemailer + Handlebars templates.
        let r = Renderer::new();
        let src = "<p>Здравствуйте, {{user.firstName}}!</p>{{#if booking}}<p>{{booking.date}} в {{booking.time}}</p>{{/if}}<a href=\"{{link}}\">Открыть</a>";
        let data = json!({"user": {"firstName": "Анна"}, "booking": {"date": "12.03", "time": "14:00"}, "link": "https://example.com/b?id=1&x=2"});
        let out = r.render(src, Escape::Html, &data).unwrap();
        assert!(out.contains("Здравствуйте, Анна!"), "{out}");
        assert!(
            out.contains("href=\"https://example.com/b?id&#x3D;1&amp;x&#x3D;2\""),
            "{out}"
        );
    }
}
