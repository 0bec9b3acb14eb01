//! Field documentation of configuration types, used to print self-explaining configs.

/// Gives the doc comment of a configuration field, so `rlvr config` can print each field with its
/// meaning. Implemented for every type deriving [`documented::DocumentedFields`].
pub trait Describe {
    /// The doc comment of `field`, if the type has such a documented field.
    fn field_doc(&self, field: &str) -> Option<&'static str>;
}

impl<T: documented::DocumentedFields> Describe for T {
    fn field_doc(&self, field: &str) -> Option<&'static str> {
        T::get_field_docs(field).ok()
    }
}
