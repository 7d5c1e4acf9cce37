"""Next-basket prediction (RecSys Challenge 2015): which sessions buy and what they buy.

``features`` (session and session-item features from click arrays), ``models`` (baselines and
gradient-boosted trees on arrays), ``neural`` (a sequence encoder with buy and item-bought heads, tensors
only), ``train`` (its loop), ``metrics`` (challenge score, buy AUC/F1, basket ranking).
"""
