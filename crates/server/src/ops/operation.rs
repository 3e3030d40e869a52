//! The operations Shoal knows, named once: each one's name, the legacy names Harper still
//! accepts for it, and what the permission check must require of whoever asks for it.
//!
//! A request's `operation` is parsed into an [`Operation`] where its body is read; from
//! there on, code matches on the enum and never on names. A new operation is one line of
//! the table below (and its arm in the dispatch `match`, which the compiler asks for).

use std::str::FromStr;

use shoal_auth::Action;

/// Declares [`Operation`] from one table: `Variant = "name" | "legacy alias" => Action,`.
/// Everything that lists operations (the enum, [`Operation::ALL`], names, parsing and
/// requirements) comes from it, so no list can fall out of step with another.
macro_rules! operations {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal $(| $alias:literal)* => $action:expr,
    )*) => {
        /// One operation of the Operations API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Operation {
            $($(#[$doc])* $variant,)*
        }

        impl Operation {
            /// Every operation, in table order.
            pub(crate) const ALL: &'static [Operation] = &[$(Operation::$variant,)*];

            /// The name Harper documents it under.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Operation::$variant => $name,)*
                }
            }

            /// Older names Harper still accepts for it.
            pub(crate) fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Operation::$variant => &[$($alias),*],)*
                }
            }

            /// What the permission check requires of whoever asks for it.
            pub(crate) fn action(self) -> Action {
                match self {
                    $(Operation::$variant => $action,)*
                }
            }
        }
    };
}

operations! {
    /// Create a database.
    CreateDatabase = "create_database" | "create_schema" => Action::Structure,
    /// Drop a database with its tables.
    DropDatabase = "drop_database" | "drop_schema" => Action::Structure,
    /// Create a table.
    CreateTable = "create_table" => Action::Structure,
    /// Drop a table.
    DropTable = "drop_table" => Action::Structure,
    /// Declare an attribute.
    CreateAttribute = "create_attribute" => Action::Structure,
    /// Drop an attribute and its values.
    DropAttribute = "drop_attribute" => Action::Structure,
    /// Describe every database.
    DescribeAll = "describe_all" => Action::Describe,
    /// Describe one database.
    DescribeDatabase = "describe_database" | "describe_schema" => Action::Describe,
    /// Describe one table.
    DescribeTable = "describe_table" => Action::Describe,
    /// Add records that do not exist yet.
    Insert = "insert" => Action::Insert,
    /// Change records that exist.
    Update = "update" => Action::Update,
    /// Add or change records.
    Upsert = "upsert" => Action::Upsert,
    /// Remove records by key.
    Delete = "delete" => Action::Delete,
    /// Read records by key.
    SearchById = "search_by_id" | "search_by_hash" => Action::Read,
    /// Read records by one attribute's value.
    SearchByValue = "search_by_value" => Action::Read,
    /// Read records matching conditions.
    SearchByConditions = "search_by_conditions" => Action::Read,
    /// Read a table's transaction log.
    ReadTransactionLog = "read_transaction_log" => Action::Admin,
    /// Read a table's audit log.
    ReadAuditLog = "read_audit_log" => Action::Admin,
    /// Facts about the node.
    SystemInformation = "system_information" => Action::Admin,
    /// Join a node to the cluster.
    AddNode = "add_node" | "set_node" => Action::Admin,
    /// Change what is replicated with a node.
    UpdateNode = "update_node" => Action::Admin,
    /// Remove a node from the cluster.
    RemoveNode = "remove_node" => Action::Admin,
    /// The cluster's links and their state.
    ClusterStatus = "cluster_status" => Action::Admin,
    /// Replace the cluster's node list.
    ConfigureCluster = "configure_cluster" => Action::Admin,
    /// Create a component.
    AddComponent = "add_component" => Action::Admin,
    /// Write a component's file.
    SetComponentFile = "set_component_file" => Action::Admin,
    /// Read a component's file.
    GetComponentFile = "get_component_file" => Action::Admin,
    /// List the components and their files.
    GetComponents = "get_components" => Action::Admin,
    /// Remove a component or one of its files.
    DropComponent = "drop_component" => Action::Admin,
    /// Create a user.
    AddUser = "add_user" => Action::Admin,
    /// Change a user.
    AlterUser = "alter_user" => Action::Admin,
    /// Remove a user.
    DropUser = "drop_user" => Action::Admin,
    /// Every user, without password hashes, with their roles.
    ListUsers = "list_users" => Action::Admin,
    /// The caller's own user record and role: for every authenticated user.
    UserInfo = "user_info" => Action::Describe,
    /// Create a role.
    AddRole = "add_role" => Action::Admin,
    /// Change a role's name or permission.
    AlterRole = "alter_role" => Action::Admin,
    /// Remove a role no active user has.
    DropRole = "drop_role" => Action::Admin,
    /// Every role.
    ListRoles = "list_roles" => Action::Admin,
}

impl FromStr for Operation {
    type Err = UnknownOperation;

    /// Its name or one of its aliases, exactly: Harper's names are case-sensitive.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.name() == name || op.aliases().contains(&name))
            .ok_or_else(|| UnknownOperation(name.to_owned()))
    }
}

/// A name no operation has; its message is Harper's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Operation '{0}' not found")]
pub(crate) struct UnknownOperation(pub(crate) String);

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name and alias parses to its operation, and `name()` gives the name back.
    #[test]
    fn names_and_aliases_round_trip() {
        for &op in Operation::ALL {
            assert_eq!(op.name().parse(), Ok(op), "{op:?}");
            for alias in op.aliases() {
                assert_eq!(alias.parse(), Ok(op), "alias {alias} of {op:?}");
            }
        }
    }

    /// No two operations share a name, and the names are Harper's snake_case.
    #[test]
    fn names_are_distinct_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for &op in Operation::ALL {
            for name in std::iter::once(op.name()).chain(op.aliases().iter().copied()) {
                assert!(seen.insert(name), "{name} is named twice");
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name} is not snake_case"
                );
            }
        }
    }

    /// The legacy names Harper documents land on the operation they were renamed to.
    #[test]
    fn legacy_aliases_map_to_the_same_operation() {
        for (alias, name) in [
            ("create_schema", "create_database"),
            ("drop_schema", "drop_database"),
            ("describe_schema", "describe_database"),
            ("search_by_hash", "search_by_id"),
            ("set_node", "add_node"),
        ] {
            let op: Operation = alias.parse().unwrap();
            assert_eq!(op, name.parse().unwrap());
            assert_eq!(op.name(), name);
        }
    }

    /// What each family of operations requires, asked of every operation in the table.
    #[test]
    fn requirements_follow_the_family() {
        for &op in Operation::ALL {
            let name = op.name();
            let action = op.action();
            let expected = match name {
                "insert" => Action::Insert,
                "update" => Action::Update,
                "upsert" => Action::Upsert,
                "delete" => Action::Delete,
                // About the caller itself: asked of no database.
                "user_info" => Action::Describe,
                _ if name.starts_with("search_") => Action::Read,
                _ if name.starts_with("describe_") => Action::Describe,
                _ if ["database", "table", "attribute"]
                    .iter()
                    .any(|thing| name.ends_with(thing)) =>
                {
                    Action::Structure
                }
                _ => Action::Admin,
            };
            assert_eq!(action, expected, "{name}");
        }
    }

    /// Names no operation has are refused with Harper's message, case and spacing included.
    #[test]
    fn unknown_names_are_refused() {
        for name in [
            "frobnicate",
            "",
            "Insert",
            "INSERT",
            " insert",
            "insert ",
            "sql",
        ] {
            let err = name.parse::<Operation>().unwrap_err();
            assert_eq!(err, UnknownOperation(name.to_owned()));
            assert_eq!(err.to_string(), format!("Operation '{name}' not found"));
        }
    }
}
