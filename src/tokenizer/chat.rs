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
    // A template that writes the system message from a variable has `{{` here.
    (!text.contains("{{") && !text.contains("{%")).then(|| text.to_string())
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
