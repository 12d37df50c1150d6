"""The send path: a user's message to the stored answer (service, admission aside), and what it is made of."""
