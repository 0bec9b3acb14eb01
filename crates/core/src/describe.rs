//! Field documentation of configuration types, used to print self-explaining configs.

/// Gives the doc comment of a configuration field, so `rlvr config` can print each field with its
/// meaning. Implement it with [`describe_fields!`](crate::describe_fields), which chains the
/// [`documented::DocumentedFields`] docs of a type and of the structs it flattens.
pub trait Describe {
    /// The doc comment of `field`, if the type has such a documented field.
    fn field_doc(&self, field: &str) -> Option<&'static str>;
}

/// Implements [`Describe`] for `$ty` from the `DocumentedFields` of `$ty` and of any structs it
/// `#[serde(flatten)]`s: `rlvr_core::describe_fields!(SimkoConfig, Surrogate);`.
#[macro_export]
macro_rules! describe_fields {
    ($ty:ty $(, $flat:ty)* $(,)?) => {
        impl $crate::describe::Describe for $ty {
            fn field_doc(&self, field: &str) -> Option<&'static str> {
                use $crate::documented::DocumentedFields as _;
                <$ty>::get_field_docs(field).ok()
                    $(.or_else(|| <$flat>::get_field_docs(field).ok()))*
            }
        }
    };
}
