"""The ``explain`` stage: why the picked model gave a user their profile, as signed contributions in the user's
terms (features, items bought, friends). ``explain.py`` loads and dispatches; ``linear.py`` is ``lr``'s exact
decomposition; ``integrated.py`` is ``sign``'s, by Captum's integrated gradients."""
