"""The offline Data Engineer's layout inference: survey the previews, propose layouts, try them, choose.

`survey.Survey` holds what the preview tools returned; `propose.proposals_for` turns it and the
datacard's facts (`propose.CardFacts`) into candidate layouts; `choose.choose` tries them on the real
files through a callback (the ``apply_layout`` tool) and keeps the one that explains the most images.
`medbuilder datacards draft` uses the same steps on a user's own folder.
"""
