//! ChatML prompts as SmolLM2's `tokenizer.chat_template` renders them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
