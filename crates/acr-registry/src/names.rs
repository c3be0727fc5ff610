//! Repository names and tags: the distribution grammar of `acr-grammar`.

pub(crate) use acr_grammar::{
    valid_component, valid_repository, valid_tag, MAX_REPOSITORY_LEN as MAX_NAME_LEN,
};
