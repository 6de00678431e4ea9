"""Small hyperparameters of every registered model, shared by the model, calculator and training tests."""

SMALL_HPARAMS = {
    "schnet": dict(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=12, cutoff_A=4.0),
    "dimenet++": dict(
        hidden_channels=16, out_emb_channels=16, int_emb_size=8, basis_emb_size=4, num_interactions=2,
        num_spherical=4, num_radial=4, cutoff_A=4.0,
    ),
    "forcenet": dict(
        hidden_channels=16, num_interactions=2, num_freqs=4, max_n=2, decoder_hidden_channels=16, cutoff_A=4.0
    ),
    "gns-tat": dict(hidden_channels=16, num_interactions=2, mlp_layers=1, num_gaussians=8, cutoff_A=4.0),
    "leftnet": dict(hidden_channels=16, num_interactions=2, num_radial=8, cutoff_A=4.0),
    "cgcnn": dict(hidden_channels=16, num_interactions=2, num_gaussians=8, head_channels=16, cutoff_A=4.0),
    "dimenet": dict(
        hidden_channels=16, num_bilinear=4, num_interactions=1, num_spherical=3, num_radial=4, num_output_layers=1,
        cutoff_A=4.0,
    ),
    "deeper-gatgnn": dict(
        hidden_channels=16, num_interactions=2, num_heads=2, num_groups=3, num_gaussians=8, cutoff_A=4.0
    ),
    "escn": dict(
        hidden_channels=8, so2_channels=8, edge_channels=8, lmax=2, mmax=1, num_interactions=2, num_gaussians=8,
        cutoff_A=4.0,
    ),
    "scn": dict(
        hidden_channels=8, message_channels=8, edge_channels=8, lmax=2, mmax=1, num_interactions=2, num_gaussians=8,
        cutoff_A=4.0,
    ),
    "equiformer": dict(
        hidden_channels=8, lmax=2, num_layers=2, num_heads=2, head_channels=4, ffn_channels=8, num_gaussians=8,
        radial_channels=8, avg_neighbours=4.0, cutoff_A=4.0,
    ),
}

# Training tests take many steps: cheaper DimeNet++, and a ForceNet whose untrained force error is
# clearly above the zero-force baseline so that learning is visible.
TRAINING_HPARAMS = {
    **SMALL_HPARAMS,
    "dimenet++": dict(
        hidden_channels=16, out_emb_channels=16, int_emb_size=8, basis_emb_size=4, num_interactions=1,
        num_spherical=3, num_radial=4, cutoff_A=4.0,
    ),
    "forcenet": dict(
        hidden_channels=16, num_interactions=2, num_freqs=2, max_n=1, decoder_hidden_channels=16, avg_neighbours=4,
        cutoff_A=4.0,
    ),
}
