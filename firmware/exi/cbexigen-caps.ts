/**
 * Fixed array sizes of the cbexigen-generated C codec (libcbv2g) that many chargers run, per schema:
 * `grammar (type name) → repeated child → cap`. That codec deviates from EXI in one place (cbexigen issue #113):
 * after the cap-th entry of such a list it codes the next event (following sibling or EE) with the grammar state of
 * the wrong list length:
 *
 * - cap equal to the XSD maxOccurs (every ISO-2 entry here): as if one more entry were still allowed — the loop
 *   state of the entries before, where SE(entry) is code 0 and every other event is one code higher (field evidence:
 *   ServiceDiscoveryRes with six EnergyTransferMode ends the list with `01`, two bits, where EXI has `0`);
 * - cap below the XSD maxOccurs (DIN PaymentOption, unbounded): as if the list were bounded at the cap — the state
 *   without SE(entry), every other event one code lower and the code width recomputed (field evidence: two
 *   PaymentOption end with `0`, one bit, where EXI has `01`).
 *
 * runtime.ts turns each entry into an alternative grammar state (`capRule`) and reads a stream that way only when a
 * capped list held exactly its cap and the standard reading failed or stopped before the data did (README "Charger
 * codecs that end full lists wrongly"). Caps of lists not named here (e.g. ISO-2 PMaxScheduleEntry, SalesTariffEntry,
 * ParameterSet, all of ISO-20) are not known from the field yet: add them with evidence.
 */
export const CBEXIGEN_ARRAY_CAPS: Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, number>>>>>> = {
  iso2: {
    SupportedEnergyTransferModeType: { EnergyTransferMode: 6 },
    ServiceListType: { Service: 8 },
    ParameterSetType: { Parameter: 16 },
    SelectedServiceListType: { SelectedService: 16 },
    SubCertificatesType: { Certificate: 4 },
    ConsumptionCostType: { Cost: 3 },
    SalesTariffEntryType: { ConsumptionCost: 3 },
    SAScheduleListType: { SAScheduleTuple: 3 },
    ChargingProfileType: { ProfileEntry: 24 },
  },
  din: {
    PaymentOptionsType: { PaymentOption: 2 },
  },
};
