"""The reviewer page: a small read-only web app over the results database (`dfw review`).

Reviewers browse flagged media, look at the sampled frames with the face boxes, the scores over time and
the explanation, and record a decision (confirm fake / mark real / unsure) that overrides the model in
every query. Nothing here imports torch: frames are decoded with the worker's media code only.
"""
