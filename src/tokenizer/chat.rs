//! Chat prompts: a GGUF's own `tokenizer.chat_template` rendered with
//! minijinja (a maintained Jinja engine; with minijinja-contrib's Python
//! string methods, real templates render as Hugging Face's do), or ChatML as
//! SmolLM2's template writes it when a file has no template.

/// Who speaks a chat turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role name written after `<|im_start|>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTurn {
    pub role: Role,
    pub content: String,
}

impl ChatTurn {
    /// A turn with the given role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The default system prompt a ChatML template inserts when the first message
/// is not a system message: the text between `<|im_start|>system\n` and the
/// next `<|im_end|>` inside the template, if there is one.
pub(crate) fn default_system_from_template(template: &str) -> Option<String> {
    let open = "<|im_start|>system\n";
    let start = template.find(open)? + open.len();
    let len = template.get(start..)?.find("<|im_end|>")?;
    let text = template.get(start..start + len)?;
    // A template that builds the system turn from variables has Jinja syntax or a
    // string concatenation (`' + message['content'] + '`) here instead of text.
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let templated = text.contains(['{', '}'])
        || ["'+", "+'", "\"+", "+\""]
            .iter()
            .any(|p| squeezed.contains(p));
    (!templated).then(|| text.to_string())
}

/// Render messages as ChatML, adding `default_system` first when the first
/// message is not a system one, and ending with the assistant header.
pub(crate) fn render(default_system: Option<&str>, messages: &[ChatTurn]) -> String {
    let mut out = String::new();
    let mut turn = |role: &str, content: &str| {
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(content);
        out.push_str("<|im_end|>\n");
    };
    if let (Some(first), Some(sys)) = (messages.first(), default_system) {
        if first.role != Role::System {
            turn("system", sys);
        }
    }
    for m in messages {
        turn(m.role.as_str(), &m.content);
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// How a conversation is rendered (see [`crate::tokenizer::Tokenizer::render_chat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatOptions {
    /// End with the header of the assistant's reply (the template's
    /// `add_generation_prompt`).
    pub add_generation_prompt: bool,
    /// The template's `enable_thinking` (Qwen3: `false` asks for no reasoning).
    pub enable_thinking: bool,
    /// `date_string` for templates that print today's date (Llama 3.x);
    /// `None`: the template's `strftime_now` gives the current UTC date where
    /// the target has a clock, else the template's own fallback.
    pub date: Option<String>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            add_generation_prompt: true,
            enable_thinking: true,
            date: None,
        }
    }
}

/// Renders `messages` through a GGUF chat template (Jinja, Hugging Face's
/// conventions: blocks trimmed, Python string methods available,
/// `raise_exception`, `strftime_now`) with llama.cpp's variables:
/// `messages`, `bos_token`, `eos_token`, `add_generation_prompt`,
/// `enable_thinking`. The error is minijinja's, with the template line.
pub(crate) fn render_template(
    template: &str,
    messages: &[ChatTurn],
    (bos, eos): (&str, &str),
    opts: &ChatOptions,
) -> Result<String, String> {
    use minijinja::{context, Environment, Error, ErrorKind, Value};
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    #[cfg(not(target_family = "wasm"))]
    env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content })
        .collect();
    let mut ctx = context! {
        messages,
        bos_token => bos,
        eos_token => eos,
        add_generation_prompt => opts.add_generation_prompt,
        enable_thinking => opts.enable_thinking,
    };
    if let Some(d) = &opts.date {
        ctx = context! { date_string => d, ..ctx };
    }
    let show = |e: Error| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    };
    env.render_str(template, ctx).map_err(show)
}

/// Today's UTC date through the subset of `strftime` chat templates use
/// (`%d %b %Y`, `%Y-%m-%d`, `%B`, `%m`, `%y`, `%%`); other directives are an error.
#[cfg(not(target_family = "wasm"))]
fn strftime_now(fmt: &str) -> Result<String, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_date(civil_from_days((secs / 86_400) as i64), fmt)
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg_attr(target_family = "wasm", allow(dead_code))]
pub(crate) fn format_date(
    (y, m, d): (i64, u32, u32),
    fmt: &str,
) -> Result<String, minijinja::Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = MONTHS[(m as usize).clamp(1, 12) - 1];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('%') => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.unwrap_or(' ')
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_793), (2026, 12, 6));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let d = (2026, 12, 6);
        assert_eq!(format_date(d, "%d %b %Y").unwrap(), "06 Dec 2026");
        assert_eq!(
            format_date(d, "%Y-%m-%d, %B %y %%").unwrap(),
            "2026-12-06, December 26 %"
        );
        assert!(format_date(d, "%H").is_err());
    }

    #[test]
    fn default_system_only_when_literal() {
        let t = "{% if x %}{{ '<|im_start|>system\nBe nice.<|im_end|>\n' }}{% endif %}";
        assert_eq!(default_system_from_template(t).as_deref(), Some("Be nice."));
        let v = "{{ '<|im_start|>system\n' + message['content'] + '<|im_end|>' }}";
        assert_eq!(default_system_from_template(v), None);
        assert_eq!(default_system_from_template("no chatml here"), None);
    }

    #[test]
    fn render_inserts_default_before_non_system_first_turn() {
        let user = ChatTurn::new(Role::User, "hi");
        let sys = ChatTurn::new(Role::System, "S");
        assert_eq!(
            render(Some("D"), std::slice::from_ref(&user)),
            "<|im_start|>system\nD<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(Some("D"), &[sys, user.clone()]),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(render(Some("D"), &[]), "<|im_start|>assistant\n");
        assert_eq!(
            render(None, &[user]),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
