//! Newtypes for ids and stable names of enums, written once as macros so
//! every service's ids look and behave the same.

/// Declares a UUIDv7 id newtype: `Copy`, ordered, serialized as the bare
/// UUID, displayed as the UUID, with `generate()` for a new time-ordered id.
///
/// ```
/// rapport_usecase::uuid_id!(
///     /// Id of a widget (`widgets/{id}`).
///     WidgetId
/// );
/// let a = WidgetId::generate();
/// assert!(WidgetId::generate() > a);
/// ```
#[macro_export]
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            $crate::__private::serde::Serialize, $crate::__private::serde::Deserialize,
        )]
        #[serde(crate = "rapport_usecase::__private::serde", transparent)]
        pub struct $name(pub $crate::__private::Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn generate() -> Self {
                Self($crate::__private::Uuid::now_v7())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// Gives a fieldless enum stable storage names: `as_str()` and its inverse
/// `from_str_opt()`. Stored names never change once written.
///
/// ```
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// enum Size { Small, Large }
/// rapport_usecase::str_enum!(Size { Small => "small", Large => "large" });
/// assert_eq!(Size::from_str_opt(Size::Large.as_str()), Some(Size::Large));
/// ```
#[macro_export]
macro_rules! str_enum {
    ($ty:ty { $($variant:ident => $s:literal),+ $(,)? }) => {
        impl $ty {
            /// Stable storage name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
            /// Inverse of `as_str`.
            pub fn from_str_opt(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
