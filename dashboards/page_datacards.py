"""Datacards: list, view, and add a new card (validated by the registry before it is saved)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import yaml

from medbuilder.dashboards import data, ui
from medbuilder.protocol.registry import DatacardError

EXAMPLE = """name: my-dataset
title: One line saying what it is
description: >-
  Free text for the agents: folders and files, which column holds the labels,
  sampling rules, anything a careful engineer should know.
path: my-dataset
tasks: [diagnosis]
modality: MRI
dimension: 2D
anatomy: brain
label_names: ["no", "yes"]
file_formats: [jpg]
licence: CC BY 4.0
provenance: real
source: where it comes from
"""


def render() -> None:
    st.title("Datacards")
    st.caption(f"One file per dataset in `{data.registry().folder}`")
    rows = data.datacard_files()
    cards = [(f, c) for f, c, e in rows if c is not None]
    if cards:
        st.dataframe(pd.DataFrame([{"name": c.name, "provenance": c.provenance, "tasks": c.tasks_text(),
                                    "modality": c.modality, "dimension": c.dimension, "file": f.name}
                                   for f, c in cards]), hide_index=True)
    for file, _, error in rows:
        if error:
            st.error(error)
    if cards:
        name = st.selectbox("View", [c.name for _, c in cards], key="card_view")
        card = next(c for _, c in cards if c.name == name)
        st.code(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100),
                language="yaml")
    st.subheader("Add a datacard")
    user = ui.require_user("Add a datacard")
    with st.form("add_card"):
        text = st.text_area("Datacard (YAML)", value=EXAMPLE, height=360, key="card_text")
        submitted = st.form_submit_button("Validate and save", disabled=user is None)
    if submitted and user:
        try:
            target = data.add_datacard(text)
        except DatacardError as err:
            st.error(f"Not saved. Field '{err.field}': {err.problem}. Fix: {err.fix}.")
        else:
            st.success(f"Saved {target}")
