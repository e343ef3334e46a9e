"""saga-sim's Streamlit app (a minimal first page; the full app arrives with its own issue)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import saga_sim as ss

ROOT = Path(__file__).resolve().parent


def main() -> None:
    st.set_page_config(page_title="saga-sim", layout="wide")
    st.title("saga-sim: orchestration vs choreography")
    sc = ss.load_scenario(ROOT / "scenarios" / "user_registration.yaml")
    cmp = ss.compare(sc, seed=0)
    cols = st.columns(2)
    for col, (style, run) in zip(cols, cmp.runs.items()):
        with col:
            st.subheader(style)
            st.metric("outcome", run.outcome)
            st.dataframe(run.events, key=f"events-{style}")
    st.write(cmp.sentence())


main()
