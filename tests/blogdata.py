"""A synthetic blog as the recipes take it: its events in index space and what its catalog
says of each post (publication time, sections)."""

from __future__ import annotations

import pyarrow as pa

from clickrec.models.base import Interactions
from clickrec.testing.synthetic import Blog, BlogSpec, generate_blog
from clickrec.training.dataset import to_interactions, training_table

Facts = dict[str, tuple[float | None, list[str]]]


def interactions_of(table: pa.Table) -> Interactions:
    """Generated events, numbered in time order as an import numbers them."""
    return to_interactions(training_table(table))


def facts_of(blog: Blog) -> Facts:
    return {
        r["item_id"]: (r["published_at"], r["categories"].split("|"))
        for r in blog.items.select(["item_id", "published_at", "categories"]).to_pylist()
    }


def blog_data(spec: BlogSpec) -> tuple[Interactions, Facts]:
    blog = generate_blog(spec)
    return interactions_of(blog.interactions), facts_of(blog)
