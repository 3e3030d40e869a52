//! Who may do what: every answer comes from `auth`'s permission check, asked about the
//! user as it is now (a dropped or deactivated user, or a changed role, counts at once),
//! and is remembered until `system` (users, roles) commits again, so that a busy
//! connection costs one atomic read per message rather than a user lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use shoal_auth::{Access as Asked, Action, Auth, Grant, Via};
use shoal_store::{SYSTEM_DATABASE, Store};
use tokio::sync::watch;

use crate::PlainTopics;

/// Answers remembered at most; past it they are forgotten and asked again.
const MAX_ANSWERS: usize = 10_000;

/// What is asked: of a table (`Some`), or of plain topics.
type Question = (String, Action, Option<(String, String)>);

/// The permission answers of one broker.
pub(crate) struct Access {
    auth: Arc<Auth>,
    /// The `system` database's last commit.
    system: Option<watch::Receiver<u64>>,
    plain: PlainTopics,
    /// Whether clients without credentials may use plain topics.
    anonymous_plain: bool,
    answers: Mutex<HashMap<Question, (u64, Option<Grant>)>>,
}

impl Access {
    /// Answers for `auth`'s users on `store`.
    pub(crate) fn new(
        auth: Arc<Auth>,
        store: &Store,
        plain: PlainTopics,
        anonymous_plain: bool,
    ) -> Access {
        Access {
            auth,
            system: store
                .database(SYSTEM_DATABASE)
                .ok()
                .map(|db| db.watch_commits()),
            plain,
            anonymous_plain,
            answers: Mutex::default(),
        }
    }

    /// Whether the user (`None`: an anonymous client) may publish and subscribe to plain
    /// topics: any user when the rule is `authenticated`, super users only otherwise.
    pub(crate) fn plain(&self, username: Option<&str>) -> bool {
        let Some(username) = username else {
            return self.anonymous_plain;
        };
        let action = match self.plain {
            PlainTopics::SuperUsers => Action::Admin,
            PlainTopics::Authenticated => Action::Own,
        };
        self.ask(username, action, None, "plain topic").is_some()
    }

    /// What the user may do to the table with `action`: the grant (which attributes),
    /// or `None` when refused.
    pub(crate) fn table(
        &self,
        username: Option<&str>,
        action: Action,
        database: &str,
        table: &str,
    ) -> Option<Grant> {
        let operation = match action {
            Action::Read => "subscribe",
            _ => "publish",
        };
        let on = Some((database.to_owned(), table.to_owned()));
        self.ask(username?, action, on, operation)
    }

    fn ask(
        &self,
        username: &str,
        action: Action,
        on: Option<(String, String)>,
        operation: &str,
    ) -> Option<Grant> {
        // Read before asking: a change landing meanwhile is asked about next time.
        let head = self.system.as_ref().map_or(0, |s| *s.borrow());
        let question = (username.to_owned(), action, on);
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, answer)) = answers.get(&question)
            && *seen == head
        {
            return answer.clone();
        }
        let (database, table) = match &question.2 {
            Some((database, table)) => (Some(database.as_str()), Some(table.as_str())),
            None => (None, None),
        };
        let asked = Asked {
            via: Via::Mqtt,
            operation,
            action,
            database,
            table,
        };
        let answer = self
            .auth
            .user_named(username)
            .ok()
            .and_then(|user| self.auth.check(&user, &asked).ok());
        if answers.len() >= MAX_ANSWERS {
            answers.clear();
        }
        answers.insert(question, (head, answer.clone()));
        answer
    }
}
