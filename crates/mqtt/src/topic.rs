//! Topic names and filters: what is valid, what matches, and shared subscriptions.

/// Longest topic name or filter accepted, in bytes (the protocol allows 65535).
pub(crate) const MAX_TOPIC_BYTES: usize = 65535;
/// Most levels a filter may have; keeps matching cheap.
pub(crate) const MAX_LEVELS: usize = 64;

/// Whether `topic` may be published to: not empty, no wildcards, no NUL.
pub(crate) fn valid_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_BYTES
        && !topic.contains(['+', '#', '\0'])
        && topic.split('/').count() <= MAX_LEVELS
}

/// Whether `filter` may be subscribed to: `+` only as a whole level, `#` only as the
/// whole last level.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_BYTES || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    if levels.len() > MAX_LEVELS {
        return false;
    }
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        other => !other.contains(['+', '#']),
    })
}

/// A subscription filter with its share group, if it is `$share/<group>/<filter>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Subscription {
    /// The share group.
    pub(crate) group: Option<String>,
    /// The filter proper.
    pub(crate) filter: String,
}

impl Subscription {
    /// Parses what a client subscribed to; `None` if it is not a valid filter.
    pub(crate) fn parse(path: &str) -> Option<Subscription> {
        if let Some(rest) = path.strip_prefix("$share/") {
            let (group, filter) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) || !valid_filter(filter) {
                return None;
            }
            return Some(Subscription {
                group: Some(group.to_owned()),
                filter: filter.to_owned(),
            });
        }
        valid_filter(path).then(|| Subscription {
            group: None,
            filter: path.to_owned(),
        })
    }
}

/// Whether `filter` matches `topic`. Topics starting with `$` are not matched by a
/// filter starting with a wildcard.
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_specification_says() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/b", true),
            ("+", "a/b", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/c", false),
            ("a//c", "a//c", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(matches(filter, topic), expected, "{filter} on {topic}");
        }
    }

    #[test]
    fn wildcards_are_whole_levels() {
        assert!(valid_filter("a/+/c/#"));
        assert!(!valid_filter("a/b#"));
        assert!(!valid_filter("a/#/c"));
        assert!(!valid_filter("a+/b"));
        assert!(!valid_filter(""));
        assert!(valid_name("a/b"));
        assert!(!valid_name("a/+"));
        assert!(!valid_name(""));
    }

    #[test]
    fn shared_subscriptions_name_a_group_and_a_filter() {
        let shared = Subscription::parse("$share/g1/a/+").expect("valid");
        assert_eq!(shared.group.as_deref(), Some("g1"));
        assert_eq!(shared.filter, "a/+");
        assert!(Subscription::parse("$share/g1").is_none());
        assert!(Subscription::parse("$share//a").is_none());
        assert!(Subscription::parse("$share/g+/a").is_none());
    }
}
