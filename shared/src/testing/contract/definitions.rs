//! The definition store's contract: aliases are unique, definitions read back
//! as written, updates and deletes, lists with filters and sorts.

use crate::domain::definition::{Definition, DefinitionInput};
use crate::domain::query::{DefinitionQuery, DefinitionSortField, SortOrder, TextFilter};
use crate::error::StoreError;
use crate::ports::DefinitionStore;

fn definition(alias: &str, group: &str, image: &str, memory: u64) -> Definition {
    Definition::create(
        format!("{group}-{alias}"),
        DefinitionInput {
            alias: Some(alias.into()),
            group_name: Some(group.into()),
            image: Some(image.into()),
            resources: crate::domain::spec::Resources {
                memory: Some(memory),
                ..Default::default()
            },
            tags: Some(vec!["t1".into()]),
            ports: Some(vec![8080]),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Definitions: uniqueness of aliases, read-back, update, delete, lists.
pub async fn definition_store_contract<S: DefinitionStore>(store: &S) {
    let a = definition("hello", "g1", "ubuntu:22.04", 512);
    store.create(&a).await.unwrap_or_else(|e| panic!("{e}"));
    let got = store
        .get(&a.definition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.as_ref(),
        Some(&a),
        "a definition reads back exactly, tags and ports included"
    );
    let by_alias = store
        .get_by_alias("hello")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_alias.as_ref(), Some(&a));
    assert_eq!(
        store.get("missing").await.unwrap_or_else(|e| panic!("{e}")),
        None
    );

    let mut dup = definition("hello", "g2", "busybox", 256);
    dup.definition_id = "other".into();
    let result = store.create(&dup).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "a taken alias is a duplicate, got {result:?}"
    );
    assert_eq!(
        store.get("other").await.unwrap_or_else(|e| panic!("{e}")),
        None,
        "a refused create writes nothing"
    );

    let b = definition("world", "g2", "busybox:latest", 1024);
    store.create(&b).await.unwrap_or_else(|e| panic!("{e}"));
    let mut b_renamed = b.clone();
    b_renamed.alias = "hello".into();
    let result = store.update(&b_renamed).await;
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "an update to a taken alias is a duplicate, got {result:?}"
    );
    let mut b_moved = b.clone();
    b_moved.group_name = "g3".into();
    store
        .update(&b_moved)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = store
        .get(&b.definition_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.map(|d| d.group_name),
        Some("g3".into()),
        "a group change is stored"
    );
    let mut ghost = b.clone();
    ghost.definition_id = "ghost".into();
    ghost.alias = "ghost".into();
    assert!(matches!(
        store.update(&ghost).await,
        Err(StoreError::NotFound(_))
    ));

    let q = DefinitionQuery {
        image: TextFilter(vec!["busy".into()]),
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.total, 1);
    assert_eq!(
        page.items[0].alias, "world",
        "image filter matches a substring"
    );
    let mut c = definition("trainer", "g4", "python", 2048);
    c.env = vec![
        crate::domain::EnvVar::new("MODEL", "v2"),
        crate::domain::EnvVar::new("STAGE", "dev"),
    ];
    store.create(&c).await.unwrap_or_else(|e| panic!("{e}"));
    let q = DefinitionQuery {
        env: vec![crate::domain::EnvVar::new("STAGE", "dev")],
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        page.items,
        [c.clone()],
        "env filter matches a held variable"
    );
    let q = DefinitionQuery {
        env: vec![
            crate::domain::EnvVar::new("STAGE", "dev"),
            crate::domain::EnvVar::new("MODEL", "v1"),
        ],
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(page.items.is_empty(), "env filters are ANDed");
    assert!(
        store
            .delete(&c.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );

    let q = DefinitionQuery {
        sort_by: DefinitionSortField::Memory,
        order: SortOrder::Desc,
        ..DefinitionQuery::default()
    };
    let page = store.list(&q).await.unwrap_or_else(|e| panic!("{e}"));
    let aliases: Vec<_> = page.items.iter().map(|d| d.alias.as_str()).collect();
    assert_eq!(aliases, ["world", "hello"], "sorted by memory, descending");

    assert!(
        store
            .delete(&a.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        !store
            .delete(&a.definition_id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "deleting twice reports nothing deleted"
    );
    assert_eq!(
        store
            .get_by_alias("hello")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    let again = definition("hello", "g1", "ubuntu", 1);
    store
        .create(&again)
        .await
        .unwrap_or_else(|e| panic!("a deleted alias can be reused: {e}"));
}
