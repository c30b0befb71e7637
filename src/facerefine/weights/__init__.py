"""Every pretrained network, one module per family: ``flux`` (FLUX.1, with its published
configs and random builds), ``lpips``, ``deepface``, ``inception`` (FID/KID), ``clip``
(CLIP-IQA) and ``lora`` (the realism-LoRA baseline); ``standins`` builds stand-ins once and
``hf`` holds the Hugging Face switches they share. Import the family you load
(``from facerefine.weights import flux``): this file imports none of them, so a stage that
loads FLUX does not depend on the DeepFace code (and its DVC deps say so).

A *spec* names where weights come from:

* a hub id (``black-forest-labs/FLUX.1-dev``) or a local directory: the real
  loading code (``from_pretrained``), the libraries' own caches, a gated-model
  token from the environment (``HF_TOKEN``, read by huggingface_hub itself and
  never by us, so it cannot reach logs), and ``HF_HUB_OFFLINE=1`` honoured;
* ``smoke``: a tiny, randomly initialised network of the *same architecture*,
  built once under the project-local stand-in folder (``$FACEREFINE_HOME``,
  default ``./.facerefine``: ``paths.facerefine_home``) and then loaded through the
  very same real loading call. Stand-ins never go to user-global caches
  (``~/.cache``, ``~/.deepface``).
* ``random``: the *published* architecture at full width with random weights
  (the ``rehearsal`` profile), built and loaded the same way. FLUX, T5 and
  CLIP depth come from the profile's ``random_depth`` (null: published depth).
  LPIPS's AlexNet, DeepFace's networks and the FID Inception are full size in
  their smoke stand-ins already, so ``random`` uses those.

Stand-ins are deterministic (seeded), so every machine builds identical ones.
"""
