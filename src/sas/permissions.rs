//! Permission letters (`sp`), account services (`ss`) and resource types (`srt`).
//!
//! Letters are normalised to the order Microsoft's SDKs write them (azure-storage-blob's
//! `ContainerSasPermissions`/`BlobSasPermissions.__str__` for a service SAS, extended with
//! Data Lake's `o`/`p`; `AccountSasPermissions.__str__` for an account SAS), so that
//! "lr" becomes "rl" and "wdlcar" becomes "racwdl". A letter the service does not define
//! is an error, never silently dropped.

use std::fmt;

use super::SasError;

/// Service SAS (also user delegation SAS) permission letters in the service's order.
const SERVICE_ORDER: &str = "racwdxyltfmeopi";
/// Account SAS permission letters in the service's order.
const ACCOUNT_ORDER: &str = "rwdxylacupfti";

/// Which kind of SAS the letters belong to: the order and a few meanings differ
/// (`p` is "permissions" (manage ACLs) in a service SAS but "process" in an account SAS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PermissionScope {
    /// Service or user delegation SAS (`racwdxyltfmeopi`).
    #[default]
    Service,
    /// Account SAS (`rwdxylacupfti`).
    Account,
}

impl PermissionScope {
    fn order(self) -> &'static str {
        match self {
            PermissionScope::Service => SERVICE_ORDER,
            PermissionScope::Account => ACCOUNT_ORDER,
        }
    }
}

/// The name of a permission letter, as `describe()` spells it.
fn letter_name(scope: PermissionScope, c: char) -> &'static str {
    match (c, scope) {
        ('r', _) => "read",
        ('a', _) => "add",
        ('c', _) => "create",
        ('w', _) => "write",
        ('d', _) => "delete",
        ('x', _) => "delete version",
        ('y', _) => "permanent delete",
        ('l', _) => "list",
        ('t', _) => "tags",
        ('f', _) => "find by tags",
        ('m', _) => "move",
        ('e', _) => "execute",
        ('o', _) => "ownership",
        ('p', PermissionScope::Service) => "permissions",
        ('p', PermissionScope::Account) => "process",
        ('u', _) => "update",
        ('i', _) => "set immutability policy",
        _ => "unknown",
    }
}

/// A set of SAS permission letters (the `sp` parameter).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions {
    /// Bit `n` set = letter `n` of the scope's order.
    bits: u32,
    scope: PermissionScope,
}

impl Permissions {
    /// Parses service SAS letters (any order, repeats allowed); unknown letters are an error.
    pub fn parse(letters: &str) -> Result<Permissions, SasError> {
        Self::parse_scoped(letters, PermissionScope::Service)
    }

    /// Parses account SAS letters (any order, repeats allowed); unknown letters are an error.
    pub fn parse_account(letters: &str) -> Result<Permissions, SasError> {
        Self::parse_scoped(letters, PermissionScope::Account)
    }

    /// Parses letters for the given kind of SAS.
    pub fn parse_scoped(letters: &str, scope: PermissionScope) -> Result<Permissions, SasError> {
        let order = scope.order();
        let mut bits = 0;
        for c in letters.chars() {
            match order.find(c) {
                Some(i) => bits |= 1 << i,
                None => {
                    return Err(SasError::BadLetters {
                        what: match scope {
                            PermissionScope::Service => "permissions",
                            PermissionScope::Account => "account SAS permissions",
                        },
                        letters: letters.to_string(),
                        letter: c,
                        valid: order,
                    })
                }
            }
        }
        Ok(Permissions { bits, scope })
    }

    /// The kind of SAS these letters were parsed for.
    pub fn scope(&self) -> PermissionScope {
        self.scope
    }

    /// Whether the letter `c` is granted.
    pub fn has(&self, c: char) -> bool {
        self.scope
            .order()
            .find(c)
            .is_some_and(|i| self.bits & (1 << i) != 0)
    }

    /// No permission at all (e.g. `sp` absent because a stored access policy holds it).
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// The letters in the service's order, each once: "lr" -> "rl", "wdlcar" -> "racwdl".
    pub fn letters(&self) -> String {
        self.scope
            .order()
            .chars()
            .enumerate()
            .filter(|(i, _)| self.bits & (1 << i) != 0)
            .map(|(_, c)| c)
            .collect()
    }

    /// The granted permissions spelled out, in the same order as `letters()`.
    pub fn describe(&self) -> Vec<&'static str> {
        self.letters()
            .chars()
            .map(|c| letter_name(self.scope, c))
            .collect()
    }

    /// `r`: read content, properties, metadata.
    pub fn read(&self) -> bool {
        self.has('r')
    }
    /// `a`: add (append blocks).
    pub fn add(&self) -> bool {
        self.has('a')
    }
    /// `c`: create new blobs.
    pub fn create(&self) -> bool {
        self.has('c')
    }
    /// `w`: write content, properties, metadata.
    pub fn write(&self) -> bool {
        self.has('w')
    }
    /// `d`: delete.
    pub fn delete(&self) -> bool {
        self.has('d')
    }
    /// `x`: delete a blob version.
    pub fn delete_version(&self) -> bool {
        self.has('x')
    }
    /// `y`: permanently delete a soft-deleted snapshot or version.
    pub fn permanent_delete(&self) -> bool {
        self.has('y')
    }
    /// `l`: list blobs (or containers, account SAS).
    pub fn list(&self) -> bool {
        self.has('l')
    }
    /// `t`: read and write blob tags.
    pub fn tags(&self) -> bool {
        self.has('t')
    }
    /// `f`: find blobs by tags.
    pub fn find(&self) -> bool {
        self.has('f')
    }
    /// `m`: move/rename (hierarchical namespace).
    pub fn move_(&self) -> bool {
        self.has('m')
    }
    /// `e`: execute (hierarchical namespace).
    pub fn execute(&self) -> bool {
        self.has('e')
    }
    /// `o`: change ownership (hierarchical namespace).
    pub fn ownership(&self) -> bool {
        self.has('o')
    }
    /// `p` in a service SAS: set permissions/ACLs (hierarchical namespace).
    pub fn manage_acl(&self) -> bool {
        self.scope == PermissionScope::Service && self.has('p')
    }
    /// `p` in an account SAS: process queue messages.
    pub fn process(&self) -> bool {
        self.scope == PermissionScope::Account && self.has('p')
    }
    /// `u` (account SAS only): update queue messages and table entities.
    pub fn update(&self) -> bool {
        self.has('u')
    }
    /// `i`: set or delete immutability policies and legal holds.
    pub fn set_immutability_policy(&self) -> bool {
        self.has('i')
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({:?}, {:?})", self.letters(), self.scope)
    }
}

/// Parses a set of letters against a fixed order; returns them normalised.
fn normalise(what: &'static str, letters: &str, order: &'static str) -> Result<String, SasError> {
    if let Some(letter) = letters.chars().find(|c| !order.contains(*c)) {
        return Err(SasError::BadLetters {
            what,
            letters: letters.to_string(),
            letter,
            valid: order,
        });
    }
    Ok(order.chars().filter(|c| letters.contains(*c)).collect())
}

/// The services an account SAS covers (`ss`): blob, queue, table, file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Services(String);

impl Services {
    const ORDER: &'static str = "bqtf";

    /// Parses `ss` letters; unknown letters are an error.
    pub fn parse(letters: &str) -> Result<Services, SasError> {
        normalise("account SAS services (ss)", letters, Self::ORDER).map(Services)
    }
    /// Normalised letters.
    pub fn letters(&self) -> &str {
        &self.0
    }
    /// Whether the blob service is covered.
    pub fn blob(&self) -> bool {
        self.0.contains('b')
    }
    /// The services spelled out.
    pub fn describe(&self) -> Vec<&'static str> {
        self.0
            .chars()
            .map(|c| match c {
                'b' => "blob",
                'q' => "queue",
                't' => "table",
                _ => "file",
            })
            .collect()
    }
}

/// The resource types an account SAS covers (`srt`): service, container, object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceTypes(String);

impl ResourceTypes {
    const ORDER: &'static str = "sco";

    /// Parses `srt` letters; unknown letters are an error.
    pub fn parse(letters: &str) -> Result<ResourceTypes, SasError> {
        normalise("account SAS resource types (srt)", letters, Self::ORDER).map(ResourceTypes)
    }
    /// Normalised letters.
    pub fn letters(&self) -> &str {
        &self.0
    }
    /// The resource types spelled out.
    pub fn describe(&self) -> Vec<&'static str> {
        self.0
            .chars()
            .map(|c| match c {
                's' => "service",
                'c' => "container",
                _ => "object",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_service_order() {
        for (given, want) in [
            ("lr", "rl"),
            ("wdlcar", "racwdl"),
            ("r", "r"),
            ("rrll", "rl"),
            ("", ""),
            ("ipoemftlyxdwcar", "racwdxyltfmeopi"),
        ] {
            assert_eq!(
                Permissions::parse(given).unwrap().letters(),
                want,
                "{given}"
            );
        }
    }

    #[test]
    fn normalises_account_order() {
        for (given, want) in [
            ("rwdlacup", "rwdlacup"),
            ("pucaldwr", "rwdlacup"),
            ("lr", "rl"),
            ("itfpucalyxdwr", "rwdxylacupfti"),
        ] {
            assert_eq!(
                Permissions::parse_account(given).unwrap().letters(),
                want,
                "{given}"
            );
        }
    }

    #[test]
    fn unknown_letters_are_errors() {
        let e = Permissions::parse("rlz").unwrap_err();
        assert!(e.to_string().contains("'z'"), "{e}");
        assert!(Permissions::parse("rU").is_err());
        // `u` is an account-SAS letter only
        assert!(Permissions::parse("ru").is_err());
        assert!(Permissions::parse_account("ru").is_ok());
        assert!(Permissions::parse_account("rm").is_err());
    }

    #[test]
    fn accessors_and_names() {
        let p = Permissions::parse("ldr").unwrap();
        assert!(p.read() && p.list() && p.delete());
        assert!(!p.write() && !p.add() && !p.create());
        assert_eq!(p.describe(), ["read", "delete", "list"]);
        assert_eq!(p.to_string(), "rdl");

        let s = Permissions::parse("p").unwrap();
        assert!(s.manage_acl() && !s.process());
        assert_eq!(s.describe(), ["permissions"]);
        let a = Permissions::parse_account("p").unwrap();
        assert!(a.process() && !a.manage_acl());
        assert_eq!(a.describe(), ["process"]);
        assert!(Permissions::default().is_empty());
    }

    #[test]
    fn services_and_resource_types() {
        let s = Services::parse("fb").unwrap();
        assert_eq!(s.letters(), "bf");
        assert!(s.blob());
        assert_eq!(s.describe(), ["blob", "file"]);
        assert!(Services::parse("bx").is_err());

        let r = ResourceTypes::parse("ocs").unwrap();
        assert_eq!(r.letters(), "sco");
        assert_eq!(r.describe(), ["service", "container", "object"]);
        assert!(ResourceTypes::parse("b").is_err());
    }
}
