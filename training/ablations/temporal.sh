#!/usr/bin/env bash
# Issue 13's recipe ablation: fine-tune the bundled default VSR model with one recipe change per row, same start,
# steps, data and seed (training/README.md, "Temporal ablation"). Resumable: rerun the same command after a stop.
#   training/ablations/temporal.sh ROW [ROW ...]      (the rows: "rows=" below)
# Environment: STEPS (600), THREADS (torch threads per run, 2), OUT (runs/abl), DATA (data/hr_clips), VAL (data/hr_val),
#   INIT (the start: the bundled default; session 5's rows started from commit 551e866's file), VQGAN (the degrader
#   of gan_td4_vq: the bundled one)
set -euo pipefail
rows="l1 td still_td pp percep_td old_td old_percep_td old_td_holds old_td4_holds old_td_nousm nousm_holds nousm_td4_holds nousm_td8_holds7 nousm_td16_holds9 nousm_td8_holds7_lpips nousm_td8_holds7_lpips03 nousm_td16_holds9_lpips03 nousm_td8_holds7_lpips03_f2 nousm_td8_holds7_lpips03_f2_hw4 nousm_td8_holds7_lpips03_f2_hw2 nousm_td8_holds7_lpips03_f2_hw16 nousm_td8_holds7_lpips03_f2_single nousm_td8_holds7_lpips03_f2_single_clean nousm_td8_holds7_lpips03_f2_single_clean25 nousm_td4_holds7_lpips03_f2_single_clean nousm_td16_holds7_lpips03_f2_single_clean nousm_td32_holds7_lpips03_f2_single_clean nousm_td8_holds7_lpips03_f2_single_clean_dsz256 nousm_td8_holds7_lpips03_f2_single_clean_nf3b8 nousm_td4_holds_percep gan gan_td gan_td4_vq gan_td4_vq_lock gan_td4_basic"
cd "$(dirname "$0")/../.."
steps=${STEPS:-600}; threads=${THREADS:-2}; out=${OUT:-runs/abl}; data=${DATA:-data/hr_clips}; val=${VAL:-data/hr_val}
init=${INIT:-vqdsr_core/weights_bundled/vqdsr_vsr_default.safetensors}
vqgan=${VQGAN:-vqdsr_core/weights_bundled/vqgan_degrade_default.safetensors}
common=(--set "data.train=[\"$data\"]" --set "data.val=\"$val\"" --set run.threads="$threads" --set run.val_every=300
        --set run.ckpt_every=100 --set run.sample_every=0 --set run.progress=false)
# old-media degradations in training too: MPEG-2 / MPEG-4 ASP besides H.264, up to two generations, composite
# NTSC/PAL, ringing, chroma bleed, aliasing (the eval's old track has its own fixed settings)
old_media=(--set 'degrade.codecs=["h264","mpeg2","mpeg4"]' --set 'degrade.codec_probs=[0.5,0.3,0.2]'
           --set 'degrade.codec_qscale=[3,16]' --set 'degrade.codec_generations=[1,2]'
           --set 'degrade.analog_probs={composite=0.3,ringing=0.2,chroma_bleed=0.2,aliasing=0.1}')
# the session-10 recipe (nousm_td8_holds7_lpips03_f2_single_clean) without its temporal weight: the base of the
# single-frame rows of sessions 10 and 11 (a later --set of the same key wins)
single_clean=("${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3
              --set net.lpips_frames=2 --set model.single_frame=true --set degrade.blur_prob=0.5 --set degrade.noise_prob=0.5)
for row in "$@"; do
    case $row in
        l1)        stage=net; set_=() ;;
        td)        stage=net; set_=(--set net.temporal_weight=1.0) ;;
        still_td)  stage=net; set_=(--set net.temporal_weight=1.0 --set data.still_prob=0.3) ;;
        pp)        stage=net; set_=(--set net.temporal_weight=1.0 --set net.pingpong_weight=0.5) ;;
        percep_td) stage=net; set_=(--set net.temporal_weight=1.0 --set net.perceptual_weight=1.0) ;;
        old_td)    stage=net; set_=(--set net.temporal_weight=1.0 "${old_media[@]}") ;;
        old_td_holds) stage=net; set_=(--set net.temporal_weight=1.0 "${old_media[@]}" --set data.hold_prob=0.5) ;;
        old_td4_holds) stage=net; set_=(--set net.temporal_weight=4.0 "${old_media[@]}" --set data.hold_prob=0.5) ;;
        old_td_nousm) stage=net; set_=(--set net.temporal_weight=1.0 "${old_media[@]}" --set net.usm=false) ;;
        nousm_holds) stage=net; set_=(--set net.temporal_weight=1.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.5) ;;
        nousm_td4_holds) stage=net; set_=(--set net.temporal_weight=4.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.5) ;;
        nousm_td8_holds7) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7) ;;
        # session 8: LPIPS itself as the loss (the feature-L1 perceptual row made LPIPS worse), two weights
        nousm_td8_holds7_lpips) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=1.0) ;;
        nousm_td16_holds9_lpips03) stage=net; set_=(--set net.temporal_weight=16.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.9 --set net.lpips_weight=0.3) ;;
        nousm_td8_holds7_lpips03) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3) ;;
        # session 9: the shipped recipe with LPIPS on 2 of the 7 frames per step (about 3x cheaper); from the shipped
        # row's own final weights (INIT) it is that recipe trained 600 steps longer
        nousm_td8_holds7_lpips03_f2) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3 --set net.lpips_frames=2) ;;
        nousm_td8_holds7_lpips03_f2_hw4) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3 --set net.lpips_frames=2 --set net.temporal_hold_weight=4.0) ;;
        # session 10: the held-pair weight's trade-off curve (1 = f2, 4 = f2_hw4), from the same start
        nousm_td8_holds7_lpips03_f2_hw2) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3 --set net.lpips_frames=2 --set net.temporal_hold_weight=2.0) ;;
        nousm_td8_holds7_lpips03_f2_hw16) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3 --set net.lpips_frames=2 --set net.temporal_hold_weight=16.0) ;;
        # session 10: the same recipe trained single-frame (model.single_frame: every frame from a zero state on
        # (t, t, t), as the exported file then runs), and that with half (clean) or three quarters (clean25) of the clips free
        # of HR blur and noise (clean downscales then a codec, as web video is)
        nousm_td8_holds7_lpips03_f2_single) stage=net; set_=(--set net.temporal_weight=8.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.7 --set net.lpips_weight=0.3 --set net.lpips_frames=2 --set model.single_frame=true) ;;
        nousm_td8_holds7_lpips03_f2_single_clean) stage=net; set_=(--set net.temporal_weight=8.0 "${single_clean[@]}") ;;
        nousm_td8_holds7_lpips03_f2_single_clean25) stage=net; set_=(--set net.temporal_weight=8.0 "${single_clean[@]}" --set degrade.blur_prob=0.25 --set degrade.noise_prob=0.25) ;;
        nousm_td4_holds7_lpips03_f2_single_clean) stage=net; set_=(--set net.temporal_weight=4.0 "${single_clean[@]}") ;;
        # session 11: the other side of td4: temporal weight 16 / 32 in single-frame training
        nousm_td16_holds7_lpips03_f2_single_clean) stage=net; set_=(--set net.temporal_weight=16.0 "${single_clean[@]}") ;;
        nousm_td32_holds7_lpips03_f2_single_clean) stage=net; set_=(--set net.temporal_weight=32.0 "${single_clean[@]}") ;;
        # session 11: the shipped recipe with each clip degraded as a 256 crop (LR 64x64), then cut to the 128 crop
        nousm_td8_holds7_lpips03_f2_single_clean_dsz256) stage=net; set_=(--set net.temporal_weight=8.0 "${single_clean[@]}" --set data.degrade_size=256) ;;
        # session 11: a single-frame net gains nothing from 7-frame clips: 8 clips of 3 frames per step instead of
        # 4 of 7 (24 frames instead of 28; LPIPS on 1 frame of each clip, 8 per step as before)
        nousm_td8_holds7_lpips03_f2_single_clean_nf3b8) stage=net; set_=(--set net.temporal_weight=8.0 "${single_clean[@]}" --set net.lpips_frames=1 --set data.num_frame=3 --set net.batch_size=8) ;;
        nousm_td16_holds9) stage=net; set_=(--set net.temporal_weight=16.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.9) ;;
        nousm_td4_holds_percep) stage=net; set_=(--set net.temporal_weight=4.0 "${old_media[@]}" --set net.usm=false --set data.hold_prob=0.5 --set net.perceptual_weight=0.2) ;;
        old_percep_td) stage=net; set_=(--set net.temporal_weight=1.0 "${old_media[@]}" --set net.perceptual_weight=1.0) ;;
        gan)       stage=gan; set_=(--set 'gan.vqgan=""') ;;
        # issue 14's pair (paper Table 2 at CPU scale): the shipped recipe's GAN stage, VQ degradation vs basic only
        gan_td4_vq) stage=gan; set_=(--set "gan.vqgan=$vqgan" --set gan.temporal_weight=4.0 "${old_media[@]}" --set data.hold_prob=0.5) ;;
        # session 9: the same with the colour-locked degrader's raw draws (keep_colour 0), the paper's raw path
        gan_td4_vq_lock) stage=gan; set_=(--set "gan.vqgan=$vqgan" --set gan.temporal_weight=4.0 "${old_media[@]}" --set data.hold_prob=0.5 --set degrade.vq_keep_colour=0.0) ;;
        gan_td4_basic) stage=gan; set_=(--set 'gan.vqgan=""' --set gan.temporal_weight=4.0 "${old_media[@]}" --set data.hold_prob=0.5) ;;
        gan_td)    stage=gan; set_=(--set 'gan.vqgan=""' --set gan.temporal_weight=1.0) ;;
        *) echo "temporal.sh: unknown row '$row' ($rows)" >&2; exit 2 ;;
    esac
    # the same fine-tuning schedule in every row: from the default's weights, lr 1e-4 cosine to 0, EMA 0.99
    # (0.999 would still hold 55% of the start after 600 steps)
    sched=(--set "$stage.init=$init" --set "$stage.total_iter=$steps" --set "$stage.lr=1e-4" --set "$stage.lr_schedule=cosine"
           --set "$stage.ema=0.99")
    [ "$stage" = gan ] && sched+=(--set gan.lr_d=1e-4)
    resume=(); [ -f "$out/$row/latest.pt" ] && resume=(--resume)
    vqdsr train-vsr training/cpu/vsr.toml --stage "$stage" --out "$out/$row" "${common[@]}" "${sched[@]}" "${set_[@]}" \
        "${resume[@]}"
done
